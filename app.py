"""Headwatch: watch a small transformer learn to audit medical-insurance claims, live. Run: `make run`."""

import streamlit as st

from dashboard import viewing

# An emoji icon: a material icon would be fetched from the internet.
st.set_page_config(page_title="Headwatch", page_icon="🩺", layout="wide")
pages = [
    st.Page("dashboard/train.py", title="Train", default=True),
    st.Page("dashboard/adam.py", title="Adam's memories"),
    st.Page("dashboard/attention.py", title="Attention"),
    st.Page("dashboard/specialization.py", title="Specialization"),
    st.Page("dashboard/verdict.py", title="Where the verdict forms"),
    st.Page("dashboard/seeds.py", title="Across seeds"),
    st.Page("dashboard/inspect_claim.py", title="Inspect"),
    st.Page("dashboard/story.py", title="Story"),
    st.Page("dashboard/runs.py", title="Runs"),
]
page = st.navigation(pages)
viewing.keep_in_address()
page.run()
