"""A saved run opened read-only is what Train, Adam's memories and Attention show, not the live run (nothing
trains here, so the live pages would say "press Train")."""

import json

import pytest

from dashboard.engine_resource import get_engine


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
