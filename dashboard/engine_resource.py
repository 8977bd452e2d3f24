"""The one training engine of this server process, shared by every browser that connects."""

from __future__ import annotations

import streamlit as st

from engine.core import Engine


# on_release closes the engine whenever the cache drops it, so a cleared cache never leaves a run training unseen.
@st.cache_resource(show_spinner=False, on_release=lambda engine: engine.close())
def get_engine() -> Engine:
    return Engine()
