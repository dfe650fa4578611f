"""A bus-to-NATS relay written the way a first attempt usually is, as a baseline.

``tests/bench/bench_engine.py`` runs it next to the salt-nats engine, against the
same master and under the same load, to show what the engine's design buys. Run it
by hand with::

    python -m tests.bench.naive_relay --config-dir /tmp/bench/conf --nats-url nats://127.0.0.1:4222

It prints one line when it has subscribed to the bus, and then relays until it is
killed. It makes, on purpose, the mistakes that the engine avoids:

- ``main`` is an ``async def``, but it calls Salt's blocking ``get_event`` inside
  it. While that call waits, the asyncio loop runs nothing else, so nats-py's
  flusher task and its replies to the server's PINGs wait too. With nats-py 2.16,
  ``await nc.publish()`` only appends to the client's pending buffer, and it yields
  to the loop only when that buffer exceeds its 2 MiB limit. So events leave in
  bursts of about 2 MiB, and the last events before a pause wait until more
  events push the buffer over the limit.
- The payload is ``str(data)``, Python's repr of the event. Only Python can read
  it back, and only with ``ast.literal_eval``.
- There is one ``await nc.publish()`` per event, no buffer of its own, and no
  handling of a lost bus or NATS connection.

Do not copy it. ``salt_nats/forwarder.py`` is the engine's version.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

DEFAULT_SUBJECT = "salt.events"


async def main(config_dir: str, nats_url: str, subject: str) -> None:
    import nats
    import salt.config
    import salt.utils.event

    opts = salt.config.master_config(os.path.join(config_dir, "master"))
    event = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
    nc = await nats.connect(nats_url, name="naive-relay")
    print(f"relaying events from {opts['sock_dir']} to {subject} (pid {os.getpid()})", flush=True)

    while True:
        data = event.get_event(full=True)
        if data:
            await nc.publish(subject, str(data).encode())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.naive_relay",
        description="Relay every salt-master event to one NATS subject, naively "
        "(a benchmark baseline, not for use).",
    )
    parser.add_argument(
        "--config-dir",
        required=True,
        help="folder with the master's config file 'master' (as for salt-master -c)",
    )
    parser.add_argument("--nats-url", required=True, help="NATS server URL")
    parser.add_argument(
        "--subject",
        default=DEFAULT_SUBJECT,
        help=f"subject for every event (default: {DEFAULT_SUBJECT})",
    )
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    asyncio.run(main(args.config_dir, args.nats_url, args.subject))
    return 0


if __name__ == "__main__":
    sys.exit(run())
