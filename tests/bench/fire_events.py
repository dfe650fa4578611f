"""Fire numbered events into a running salt-master's event bus.

Run it as a separate process next to a master, for example::

    python -m tests.bench.fire_events --config-dir /tmp/bench/conf --count 10000 --rate 500

Each event goes through Salt's own client (``SaltEvent.fire_event``), the path a
master's workers use. Its data carries ``seq`` (0, 1, 2, ...) and ``fire_time``
(the sender's ``time.time()`` just before the send), so a receiver can count lost
events and compute latency. When firing ends, the script prints one JSON line with
the totals.

Event sizes follow the events seen on a salt 3008 master. With ``--mix real``, most
events are small auth, presence and minion-start events of about 300 bytes
(msgpack); one in seven is a job return of about 3 KB, and one in a thousand is a
state return of about 200 KB. ``--mix small`` fires only the small events.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

MAX_COUNT = 1_000_000
MIXES = ("small", "real")

# With --mix real: every JOB_RETURN_EVERY-th event is a job return, every
# STATE_RETURN_EVERY-th a state return, and the rest are small events.
JOB_RETURN_EVERY = 7
STATE_RETURN_EVERY = 1000

_MINION_ID = "web0042.example.com"
_JID = "20261204194043040329"

# A line of PEM text, so the auth event is as large as a real one with a 2048-bit key.
_PEM_LINE = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2LJjnAJW4471favMNUhG"


def _auth_event() -> dict[str, Any]:
    return {
        "act": "accept",
        "id": _MINION_ID,
        "pub": "-----BEGIN PUBLIC KEY-----\n" + "\n".join([_PEM_LINE] * 3) + "\n-----END",
        "result": True,
    }


def _presence_event() -> dict[str, Any]:
    return {"present": [f"web{n:04d}.example.com" for n in range(12)]}


def _minion_start_event() -> dict[str, Any]:
    return {
        "cmd": "_minion_event",
        "data": f"Minion {_MINION_ID} started at Fri Dec  4 19:40:38 2026",
        "id": _MINION_ID,
        "pretag": None,
        "tag": f"salt/minion/{_MINION_ID}/start",
        "ts": 1796413238,
    }


def _job_return_event() -> dict[str, Any]:
    lines = [
        f"Dec 04 19:40:{n % 60:02d} {_MINION_ID} systemd[1]: Started session {n} of user deploy."
        for n in range(36)
    ]
    return {
        "cmd": "_return",
        "fun": "cmd.run",
        "fun_args": ["journalctl -n 36 --no-pager"],
        "id": _MINION_ID,
        "jid": _JID,
        "retcode": 0,
        "return": "\n".join(lines),
        "success": True,
    }


def _state_return_event() -> dict[str, Any]:
    states = {}
    for n in range(400):
        name = f"/etc/app/conf.d/{n:04d}-service.conf"
        states[f"file_|-app_config_{n}_|-{name}_|-managed"] = {
            "__id__": f"app_config_{n}",
            "__run_num__": n,
            "__sls__": "app.config",
            "changes": {"diff": f"--- \n+++ \n@@ -1 +1 @@\n-port={8000 + n}\n+port={9000 + n}\n"},
            "comment": f"File {name} updated",
            "duration": 4.21,
            "name": name,
            "result": True,
            "start_time": "19:40:43.112233",
        }
    return {
        "cmd": "_return",
        "fun": "state.apply",
        "fun_args": ["app"],
        "id": _MINION_ID,
        "jid": _JID,
        "out": "highstate",
        "retcode": 0,
        "return": states,
        "success": True,
    }


# Kinds of event: name -> (tag suffix, data template without seq and fire_time).
EVENT_KINDS: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "auth": ("auth", _auth_event),
    "presence": ("presence/present", _presence_event),
    "minion_start": (f"minion/{_MINION_ID}/start", _minion_start_event),
    "job_return": (f"job/{_JID}/ret/{_MINION_ID}", _job_return_event),
    "state_return": (f"job/{_JID}/ret/{_MINION_ID}/state", _state_return_event),
}
_SMALL_KINDS = ("auth", "presence", "minion_start")


def kind_for(seq: int, mix: str) -> str:
    """Return the kind of event number ``seq`` in ``mix``, which depends on nothing else."""
    if mix == "real":
        if seq % STATE_RETURN_EVERY == STATE_RETURN_EVERY - 1:
            return "state_return"
        if seq % JOB_RETURN_EVERY == JOB_RETURN_EVERY - 1:
            return "job_return"
    return _SMALL_KINDS[seq % len(_SMALL_KINDS)]


def packed_sizes() -> dict[str, int]:
    """Return the msgpack size in bytes of each kind of event's data, as the bus carries it."""
    import salt.payload

    sizes = {}
    for kind, (_suffix, make) in EVENT_KINDS.items():
        data = make()
        data.update(seq=0, fire_time=time.time(), _stamp="2026-12-04T19:40:38.315758+00:00")
        sizes[kind] = len(salt.payload.dumps(data, use_bin_type=True))
    return sizes


@dataclass
class FireResult:
    """Totals of one firing run, with ``elapsed`` and ``max_lag`` in seconds."""

    fired: int
    failed: int
    elapsed: float
    rate: float
    max_lag: float
    tag_prefix: str
    mix: str


def fire_events(
    config_dir: str,
    count: int,
    rate: float,
    tag_prefix: str = "bench",
    mix: str = "real",
) -> FireResult:
    """Fire ``count`` events at ``rate`` events/s (0: as fast as possible) into the master bus.

    Events go out on a fixed schedule that starts at the first send. A late event is
    sent at once, and the ones after it catch up. ``max_lag`` is the largest delay
    behind that schedule. Raises ``ValueError`` on invalid arguments and
    ``RuntimeError`` when the master's event socket cannot be reached.
    """
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"invalid count {count}: expected 1 to {MAX_COUNT}")
    if rate < 0:
        raise ValueError(f"invalid rate {rate}: expected events/s >= 0 (0 for no limit)")
    if mix not in MIXES:
        raise ValueError(f"invalid mix {mix!r}: expected one of {', '.join(MIXES)}")
    tag_prefix = tag_prefix.rstrip("/")
    if not tag_prefix:
        raise ValueError("invalid tag prefix: it must not be empty")

    import salt.config
    import salt.utils.event

    opts = salt.config.master_config(os.path.join(config_dir, "master"))
    event = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False)
    # Connect before the schedule starts, so the first events are not late.
    if not event.connect_pull(timeout=10):
        event.destroy()
        raise RuntimeError(
            f"failed to connect to the master event socket in {opts['sock_dir']} within 10 s; "
            "is the salt-master running with this config?"
        )

    templates = {kind: make() for kind, (_suffix, make) in EVENT_KINDS.items()}
    tags = {kind: f"{tag_prefix}/{suffix}" for kind, (suffix, _make) in EVENT_KINDS.items()}

    fired = failed = 0
    max_lag = 0.0
    interval = 1.0 / rate if rate else 0.0
    try:
        start = time.monotonic()
        for seq in range(count):
            if interval:
                lag = time.monotonic() - (start + seq * interval)
                if lag < 0:
                    time.sleep(-lag)
                else:
                    max_lag = max(max_lag, lag)

            kind = kind_for(seq, mix)
            # fire_event adds _stamp to the dict it gets, so every event needs a copy.
            data = dict(templates[kind])
            data["seq"] = seq
            data["fire_time"] = time.time()
            if event.fire_event(data, tags[kind]):
                fired += 1
            else:
                failed += 1
        elapsed = time.monotonic() - start
    finally:
        event.destroy()

    return FireResult(
        fired=fired,
        failed=failed,
        elapsed=elapsed,
        rate=fired / elapsed if elapsed > 0 else 0.0,
        max_lag=max_lag,
        tag_prefix=tag_prefix,
        mix=mix,
    )


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"invalid count {value}: expected 1 to {MAX_COUNT}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid rate {value}: expected >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fire_events",
        description="Fire numbered events into a running salt-master's event bus.",
    )
    parser.add_argument(
        "--config-dir",
        required=True,
        help="folder with the master's config file 'master' (as for salt-master -c)",
    )
    parser.add_argument(
        "--count", type=_count, required=True, help=f"number of events, 1 to {MAX_COUNT}"
    )
    parser.add_argument(
        "--rate",
        type=_rate,
        default=0.0,
        help="events per second; 0 fires as fast as possible (default: 0)",
    )
    parser.add_argument(
        "--tag-prefix",
        default="bench",
        help="tag prefix; tags are PREFIX/auth, PREFIX/job/<jid>/ret/<id> and so on "
        "(default: bench)",
    )
    parser.add_argument(
        "--mix",
        choices=MIXES,
        default="real",
        help="'small': only ~300 B events; 'real': also 3 KB job returns (1 in 7) and "
        "200 KB state returns (1 in 1000) (default: real)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = fire_events(args.config_dir, args.count, args.rate, args.tag_prefix, args.mix)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(result)), flush=True)
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
