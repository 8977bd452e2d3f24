"""Headwatch's Streamlit pages, their live-update helper and the pure figure and text builders they use."""
