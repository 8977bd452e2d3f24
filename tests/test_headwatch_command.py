"""`headwatch` arguments: a bad one is one plain line and exit code 2, before Streamlit starts; serving beyond this
machine warns who can then train."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

import headwatch.__main__ as command

ROOT = Path(__file__).resolve().parents[1]


def _ipv6_here() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = pytest.mark.skipif(not _ipv6_here(), reason="this machine has no IPv6")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Streamlit's command line as `headwatch` would start it, recorded instead of serving."""
    started: list[list[str]] = []
    monkeypatch.setattr(command.streamlit_cli, "main", lambda: started.append(list(sys.argv)) or 0)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setenv("HEADWATCH_RUNS_DIR", "")
    return started


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--port", "99999"], "'99999' is not a port"),
        (["--port", "0"], "'0' is not a port"),
        (["--port", "http"], "'http' is not a port"),
        (["--address", "nonsense!!"], "nonsense!! is not an IP address"),
        (["--address", "999.1.1.1"], "999.1.1.1 is not an IP address"),
        (["--address", "192.0.2.1"], "192.0.2.1 cannot be listened on here"),  # TEST-NET-1: no machine's address
        (["--runs", "README.md"], "README.md is not a folder"),
    ],
)
def test_a_bad_argument_is_one_plain_line_and_nothing_is_served(
    argv: list[str], named: str, served: list, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert command.main(argv) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and error.startswith("error: ") and named in error
    assert not served


@pytest.mark.parametrize("address", ["0.0.0.0", pytest.param("::", marks=IPV6)])
def test_serving_beyond_this_machine_says_who_can_train_and_where_to_read_first(
    address: str, served: list, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert command.main(["--address", address, "--port", "8600", "--runs", str(tmp_path)]) == 0
    warning = capsys.readouterr().err
    assert warning.startswith(
        f"warning: with --address {address}, anyone who can reach port 8600 can start and stop training"
    )
    assert f'"{command.SHARING}"' in warning and f"## {command.SHARING}\n" in (ROOT / "README.md").read_text()
    assert f"--server.address={address}" in served[0]


@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", pytest.param("::1", marks=IPV6)])
def test_this_machine_only_is_served_without_a_warning(
    address: str, served: list, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert command.main(["--address", address, "--runs", str(tmp_path)]) == 0
    assert capsys.readouterr().err == "" and f"--server.address={address}" in served[0]
