"""A bus reader that does part of the engine's work, to measure what that part costs.

``tests/bench/bench_engine.py`` runs it next to the engine, against the same master
and under the same load, and compares its CPU time per event with the engine's and
with the master's EventPublisher's. It reads the bus with the engine's own
:class:`salt_nats.bus.MasterBus`, in one of two modes:

read
    Decode the tag of each frame and count the benchmark's events. No NATS.
encode
    Also do what the engine does before it publishes: check the tag against the
    engine's default filter, draw a message id and encode the event with the
    engine's :class:`salt_nats.codec.EventEncoder`. No NATS.

So ``read`` is the least that any Python reader of the bus pays per event, and
``encode`` the least that the engine pays before nats-py takes over.

Commands come on stdin, one per line, and each gets one JSON line in reply on
stdout: ``count <phase>`` and ``stop`` (which replies with the CPU seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence

from tests.bench.common import TAG_ROOT, reply

MODES = ("read", "encode")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# Events read, by benchmark phase.
COUNTS: Counter[str] = Counter()


async def _read(config_dir: str, mode: str, payload_format: str) -> None:
    import salt.config
    from nats.nuid import NUID

    from salt_nats.bus import MasterBus
    from salt_nats.codec import TAG_END, EventEncoder
    from salt_nats.config import DEFAULT_EXCLUDE
    from salt_nats.forwarder import TagFilter
    from salt_nats.status import Stats

    opts = salt.config.master_config(os.path.join(config_dir, "master"))
    bus = MasterBus(opts, Stats(), "floor")
    encoder = EventEncoder(
        subject_prefix="salt.floor",
        master_id=opts["id"],
        payload_format=payload_format,
        oversize="truncate",
        max_subject_bytes=1024,
    )
    tag_filter = TagFilter([], DEFAULT_EXCLUDE)
    nuid = NUID()
    max_payload = 8 * 1024 * 1024
    prefix = f"{TAG_ROOT}/"
    await bus.connect()
    loop = asyncio.get_running_loop()
    _start_commands(lambda: loop.call_soon_threadsafe(bus.close))
    reply({"ready": True, "pid": os.getpid()})
    try:
        while True:
            frames = await bus.recv_batch()
            if not frames:
                return  # closed by the stop command
            for frame in frames:
                end = frame.find(TAG_END)
                tag = frame[: end if end >= 0 else len(frame)].decode("utf-8", "surrogateescape")
                if mode == "encode" and tag_filter.allows(tag):
                    encoder.encode(frame, nuid.next().decode(), max_payload)
                if tag.startswith(prefix):
                    COUNTS[tag.split("/", 2)[1]] += 1
    finally:
        bus.close()


def _start_commands(on_stop: Callable[[], object]) -> None:
    """Reply to the parent's commands on a thread, so that the loop only reads the bus."""

    def serve() -> None:
        # This thread only reads COUNTS, and the GIL makes each read consistent.
        for line in sys.stdin:
            command, _, phase = line.strip().partition(" ")
            if command == "count":
                reply({"count": COUNTS[phase]})
            elif command == "stop":
                break
            elif command:
                reply({"error": f"unknown command {command!r}; expected count or stop"})
        on_stop()

    threading.Thread(target=serve, name="commands", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.floor_reader",
        description="Read a salt-master's bus the engine's way, doing part of its work.",
    )
    parser.add_argument("--config-dir", required=True, help="the master's config folder")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--format", choices=("json", "msgpack"), default="json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_read(args.config_dir, args.mode, args.format))
    reply({"cpu": _cpu_seconds()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
