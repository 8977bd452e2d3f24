"""`headwatch --runs path/to/runs`: the dashboard, served on a runs folder of the user's choosing, from any folder.
Installed on the PATH by `pip install -e <a Headwatch checkout>`; `python -m headwatch` is the same."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
import tomllib
from pathlib import Path
from typing import NoReturn

from streamlit.web import cli as streamlit_cli

CHECKOUT = Path(__file__).resolve().parents[1]
APP = CHECKOUT / "app.py"
# Streamlit reads its settings from the folder it is started in; the dashboard's are passed on from the checkout's
SETTINGS = CHECKOUT / ".streamlit" / "config.toml"
SHARING = "Sharing a live run on a network"  # the README's section on serving beyond this machine


class Refused(Exception):
    """A bad argument, in one line for the user."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would print its usage first: one line says enough
        raise Refused(message)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: a port is a number from 1 to 65535")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="headwatch", description="Serve the Headwatch dashboard on a runs folder.")
    parser.add_argument(
        "--runs",
        type=Path,
        default=Path("runs"),
        help="the folder of runs to list, follow and train into (default: ./runs)",
    )
    parser.add_argument("--port", type=_port, default=8501)
    parser.add_argument(
        "--address",
        default="127.0.0.1",
        help="where to listen (default 127.0.0.1: this machine only; see the README before sharing)",
    )
    return parser


def streamlit_options(settings: Path = SETTINGS) -> list[str]:
    """The dashboard's Streamlit settings as command-line options (`--server.headless=true`, ...)."""
    options = []
    for section, values in tomllib.loads(settings.read_text(encoding="utf-8")).items():
        for name, value in values.items():
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            options.append(f"--{section}.{name}={shown}")
    return options


def _is_ip_address(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def only_this_machine(address: str) -> bool:
    """Whether a server listening on `address` is reachable from this machine only (a loopback address). Refused
    unless it is an IP address of this machine, or this machine's own name (localhost or its host name): other names
    are not looked up, so checking needs no network."""
    if not _is_ip_address(address) and address not in ("localhost", socket.gethostname()):
        raise Refused(f"--address {address} is not an IP address (such as 127.0.0.1) or this machine's name")
    try:
        found = socket.getaddrinfo(address, 0, type=socket.SOCK_STREAM)
        for family, kind, proto, _, where in found:
            with socket.socket(family, kind, proto) as probe:  # what Streamlit will do, on a port the system picks
                probe.bind(where)
    except OSError as error:
        raise Refused(f"--address {address} cannot be listened on here: {error.strerror or error}") from None
    return all(ipaddress.ip_address(where[0].split("%")[0]).is_loopback for *_, where in found)


def _checked(argv: list[str] | None) -> tuple[argparse.Namespace, Path]:
    """The arguments and the runs folder, or Refused: all checked before Streamlit starts."""
    args = _parser().parse_args(argv)
    if not APP.is_file():
        raise Refused(f"the dashboard is not at {APP}: install Headwatch with `pip install -e <its checkout>`")
    try:
        runs = args.runs.expanduser().resolve()
        if runs.exists() and not runs.is_dir():
            raise Refused(f"{runs} is not a folder")
    except (OSError, ValueError, RuntimeError) as error:  # no permission, a NUL byte, a link loop
        raise Refused(f"--runs {args.runs} cannot be used: {getattr(error, 'strerror', None) or error}") from None
    if not only_this_machine(args.address):
        print(
            f"warning: with --address {args.address}, anyone who can reach port {args.port} can start and stop "
            f'training and download saved runs (there are no accounts): read "{SHARING}" in '
            f"{CHECKOUT / 'README.md'} first",
            file=sys.stderr,
        )
    return args, runs


def main(argv: list[str] | None = None) -> int:
    try:
        args, runs = _checked(argv)
    except Refused as refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    os.environ["HEADWATCH_RUNS_DIR"] = str(runs)
    sys.argv = [
        "streamlit",
        "run",
        str(APP),
        *streamlit_options(),
        f"--server.address={args.address}",
        f"--server.port={args.port}",
    ]
    return streamlit_cli.main()


if __name__ == "__main__":
    sys.exit(main())
