"""A saved run opened read-only is what Train, Adam's memories and Attention show, not the live run (nothing
trains here, so the live pages would say "press Train")."""

import json
from pathlib import Path

import pytest

from dashboard.engine_resource import get_engine


def address(at) -> str | None:
    """The run in the page's address (AppTest keeps what the app set as a list, what the test set as it was)."""
    value = at.query_params.get("run")
    return value[-1] if isinstance(value, list) else value


def chart_titles(at) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


@pytest.mark.parametrize("page", ["dashboard/train.py", "dashboard/adam.py", "dashboard/attention.py"])
def test_a_reopened_saved_run_is_what_the_page_shows(page: str, open_app, saved_run, healthy) -> None:
    at = open_app(page)
    assert not at.get("plotly_chart")  # the live engine has no run yet
    at.session_state["replay_run"] = saved_run
    at.run()
    healthy(at)
    assert f"Viewing saved run **{saved_run}** (read-only)" in at.info[0].value
    assert chart_titles(at), "the saved run's charts"
    assert not any("press Train" in i.value for i in at.info)
    at.button(key="back_to_live").click().run()
    healthy(at)
    assert not at.get("plotly_chart")


def test_train_page_shows_the_saved_runs_status_and_settings(open_app, saved_run, healthy) -> None:
    at = open_app("dashboard/train.py")
    at.session_state["replay_run"] = saved_run
    at.run()
    healthy(at)
    snap = get_engine().replay(saved_run)
    assert (at.warning if snap.no_better_than_chance else at.success)[0].value == snap.message
    assert snap.message.startswith("Finished 300 steps")
    assert any(f"seed {snap.config['seed']}" in c.value for c in at.caption)


def test_the_race_belongs_to_the_live_run(open_app, saved_run, healthy) -> None:
    at = open_app("dashboard/adam.py")
    at.session_state["replay_run"] = saved_run
    at.run()
    healthy(at)
    assert not [b for b in at.button if b.key == "race"]
    assert any("go back to the live run" in i.value for i in at.info)


@pytest.mark.parametrize("page", ["dashboard/story.py", "dashboard/specialization.py", "dashboard/inspect_claim.py"])
def test_a_link_to_a_saved_run_opens_it_and_a_reload_keeps_it(page: str, engine_env, saved_run, healthy) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.query_params["run"] = saved_run  # a new browser session opened on the run's link
    at.switch_page(page)
    at.run()
    healthy(at)
    assert any(f"Viewing saved run **{saved_run}**" in i.value and "address opens it again" in i.value for i in at.info)
    assert address(at) == saved_run
    at.button(key="back_to_live").click().run()
    healthy(at)
    assert "run" not in at.query_params and not any("Viewing saved run" in i.value for i in at.info)


def test_opening_a_run_puts_it_in_the_address(open_app, saved_run, healthy) -> None:
    at = open_app("dashboard/runs.py")
    at.selectbox(key="open_run").set_value(saved_run).run()
    at.button(key="open").click().run()
    healthy(at)
    assert address(at) == saved_run


def test_train_page_says_its_buttons_act_on_the_live_run_while_a_saved_run_is_viewed(
    open_app, saved_run, healthy
) -> None:
    at = open_app("dashboard/train.py")
    at.session_state["replay_run"] = saved_run
    at.run()
    healthy(at)
    assert all(at.button(key=key).disabled for key in ("pause", "stop", "reset"))
    assert any("Pause, Stop and Reset act on the live run" in c.value for c in at.caption)
