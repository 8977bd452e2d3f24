"""Headwatch's engine: model, trainer thread, telemetry, metrics and runs. It never imports Streamlit."""
