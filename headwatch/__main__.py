"""`headwatch --runs path/to/runs`: the dashboard, served on a runs folder of the user's choosing, from any folder.
Installed on the PATH by `pip install -e <a Headwatch checkout>`; `python -m headwatch` is the same."""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

from streamlit.web import cli as streamlit_cli

CHECKOUT = Path(__file__).resolve().parents[1]
APP = CHECKOUT / "app.py"
# Streamlit reads its settings from the folder it is started in; the dashboard's are passed on from the checkout's
SETTINGS = CHECKOUT / ".streamlit" / "config.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headwatch", description="Serve the Headwatch dashboard on a runs folder.")
    parser.add_argument("--runs", type=Path, default=Path("runs"),
                        help="the folder of runs to list, follow and train into (default: ./runs)")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--address", default="127.0.0.1",
                        help="where to listen (default 127.0.0.1: this machine only; see the README before sharing)")
    return parser


def streamlit_options(settings: Path = SETTINGS) -> list[str]:
    """The dashboard's Streamlit settings as command-line options (`--server.headless=true`, ...)."""
    options = []
    for section, values in tomllib.loads(settings.read_text(encoding="utf-8")).items():
        for name, value in values.items():
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            options.append(f"--{section}.{name}={shown}")
    return options


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not APP.is_file():
        print(f"error: the dashboard is not at {APP}: install Headwatch with `pip install -e <its checkout>`",
              file=sys.stderr)
        return 2
    runs = args.runs.expanduser().resolve()
    if runs.exists() and not runs.is_dir():
        print(f"error: {runs} is not a folder", file=sys.stderr)
        return 2
    os.environ["HEADWATCH_RUNS_DIR"] = str(runs)
    sys.argv = ["streamlit", "run", str(APP), *streamlit_options(),
                f"--server.address={args.address}", f"--server.port={args.port}"]
    return streamlit_cli.main()


if __name__ == "__main__":
    sys.exit(main())
