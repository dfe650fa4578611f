"""The ``salt-nats`` command."""

from __future__ import annotations

import argparse
import logging
import sys

from salt_nats import __version__


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``salt-nats`` command."""
    parser = argparse.ArgumentParser(
        prog="salt-nats", description="Tools for the salt-nats bridge between Salt and NATS."
    )
    parser.add_argument("--version", action="version", version=f"salt-nats {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="start a local nats-server, salt-master and minion, run jobs, print the events",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop this many seconds after the jobs ran, instead of waiting for Ctrl-C",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary folder with configs and logs"
    )
    demo.add_argument(
        "--format", choices=("json", "msgpack"), default="json", help="payload format"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``salt-nats`` command; return its exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.command == "demo":
        from salt_nats.demo import run_demo

        return run_demo(duration=args.duration, keep=args.keep, payload_format=args.format)
    return 2


if __name__ == "__main__":
    sys.exit(main())
