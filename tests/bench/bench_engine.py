"""Measure the salt-nats engine against a plain bus listener and a naive relay.

Run from the repository root (``make bench`` runs the defaults through pytest)::

    .venv/bin/python -m tests.bench.bench_engine            # full run, about 10 to 12 min
    .venv/bin/python -m tests.bench.bench_engine --quick    # smoke run, about 3 min

For each engine configuration (``--configs``: ``json-core``, ``msgpack-core`` and
``json-jetstream``), the script starts a nats-server and a salt-master whose
``engines:`` list contains the nats engine, on free 127.0.0.1 ports in a temporary
folder. Events come from ``tests/bench/fire_events.py`` processes through Salt's
own ``fire_event``, with the ``real`` mix of small events, job returns and state
returns. Every event carries its sequence number and fire time.

Three readers take the events off the master bus at the same time:

engine
    The salt-nats engine inside the master. A NATS subscriber in this process
    records when each event arrives on ``salt.events.bench.>``.
listener
    A child process (this script with ``--listener``) that only reads the bus with
    Salt's ``SaltEvent.get_event`` and records when each event arrives. It does
    not use NATS, so it is the baseline for throughput and latency.
naive
    ``tests/bench/naive_relay.py``, which calls the blocking ``get_event`` inside
    an ``async def`` and publishes ``str(data)`` on ``salt.events``. It runs only
    in the saturation phase.

The phases of one configuration, in order:

warm-up
    200 events at 200 events/s, which must reach the engine and the listener.
saturation
    ``--senders`` processes fire ``--saturation-count`` events in total as fast as
    they can, ``--runs`` times. The engine, the listener and the naive relay all
    read them.
latency
    One sender fires at ``--latency-rate`` for ``--latency-duration`` seconds,
    ``--runs`` times. The naive relay is stopped by then.
sustained
    The listener is stopped, and ``--senders`` processes fire at full speed until
    the engine has seen the second memory checkpoint of events in total
    (``--checkpoints``). With the defaults that is about 55,000 events, so this
    phase also shows whether the engine keeps up with the bus for longer than its
    buffer of 10,000 events can bridge.
floor
    ``tests/bench/floor_reader.py`` reads the bus next to the engine, once in each
    of its modes: ``read`` (the tag only) and ``encode`` (what the engine does
    before it publishes). Each mode runs the saturation load ``--runs`` times. Its
    CPU per event is the least that the engine could pay with the same reader and
    encoder, in the same run.
outage
    nats-server is stopped for ``--outage-duration`` seconds while two senders fire
    ``--outage-rate`` events/s in total, so that the engine's buffer (default 10,000
    events or 64 MiB) fills up. Then nats-server starts again on the same port.

CPU time comes from psutil's ``cpu_times()`` of the engine process and of the
master's ``EventPublisher`` process, which serves the bus to every subscriber,
before and after each phase, divided by the events fired in the phase. Resident
memory (RSS) of the engine process is read at start, after each phase and every
0.5 s during the outage, when the engine's heartbeat file (written every 2 s
here) also gives its buffer size and drop counters.

The figures of each phase kind are the median, minimum and maximum over the runs.
Memory and outage figures come from one pass per configuration. With ``--profile
DIR``, py-spy records the engine's Python code (the samples while it holds the
GIL) during the first saturation and fixed-rate runs.

NOTE: Salt's synchronous ``fire_event`` (salt 3008.4) starts a thread per event,
so one sender process reaches about 900 events/s on an idle 2-core machine. The
saturation phase therefore measures the bus with all CPUs busy, and the fire
rate it reports is the limit that the senders reached, not a limit of the engine.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import math
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.common import (
    COMMAND_TIMEOUT,
    READY_TIMEOUT,
    REPO_ROOT,
    STOP_TIMEOUT,
    TAG_ROOT,
    BackgroundLoad,
    BenchMaster,
    JsonLineChild,
    describe_machine,
    fire,
    format_summary,
    percentile,
    positive_float,
    positive_int,
    reply,
    split_count,
    wait_for_counts,
)

log = logging.getLogger("bench_engine")

ENGINE_CONFIGS: dict[str, dict[str, str]] = {
    "json-core": {"format": "json", "mode": "core"},
    "msgpack-core": {"format": "msgpack", "mode": "core"},
    "json-jetstream": {"format": "json", "mode": "jetstream"},
}
SOURCES = ("engine", "listener", "naive")
SOURCE_LABELS = {
    "engine": "engine",
    "listener": "plain listener",
    "naive": "naive relay",
    "floor": "floor reader",
}
FLOOR_MODES = {"read": "read only", "encode": "read and encode"}

# The engine entry is named ``nats``, so its heartbeat file is ``nats.json``.
ENGINE_INSTANCE = "nats"
ENGINE_SUBJECT_PREFIX = "salt.events"
ENGINE_STREAM = "SALT_EVENTS"
HEARTBEAT_INTERVAL = 2.0

NAIVE_SUBJECT = "salt.events"

WARMUP_COUNT = 200
WARMUP_RATE = 200.0
SAMPLE_INTERVAL = 0.5
ENGINE_START_TIMEOUT = 60.0

# After NATS comes back, the engine waits up to reconnect_time_wait (2 s by default)
# before its next connect attempt. A longer quiet period keeps that wait from
# ending the outage phase early.
OUTAGE_QUIET_PERIOD = 15.0
OUTAGE_SENDERS = 2
OUTAGE_MAX_DRAIN_TIME = 180.0

# RSS may grow by this share after the buffer filled and still count as bounded.
OUTAGE_BOUNDED_GROWTH = 0.05

# Targets, as ratios from the same run.
TARGET_THROUGHPUT_CORE = 0.95
TARGET_THROUGHPUT_JETSTREAM = 0.9
TARGET_ADDED_P99_MS = 2.0
TARGET_CPU_RATIO = 0.3
TARGET_RSS_GROWTH = 0.10

# The process that logged this line is the engine. The log line prefix of salt
# 3008.4 is ``[<pid>]``, and ``[<process name>(<pid>)]`` is accepted too.
ENGINE_START_PATTERN = re.compile(r"\[(?:[^\[\]]*\()?(\d+)\)?\]\s*salt-nats: starting engine")

# str() of the event dict that the naive relay publishes.
NAIVE_TAG_PATTERN = re.compile(rb"'tag': 'bench/([^/']+)/(s\d+)/")
NAIVE_DATA_PATTERN = re.compile(rb"'seq': (\d+), 'fire_time': ([0-9.eE+-]+)")


@dataclass
class Preset:
    """Defaults of one kind of run. Options given on the command line override them."""

    runs: int
    saturation_count: int
    senders: int
    latency_rate: float
    latency_duration: float
    checkpoints: tuple[int, int]
    outage_duration: float
    outage_rate: float


FULL = Preset(
    runs=3,
    saturation_count=10_000,
    senders=3,
    latency_rate=500.0,
    latency_duration=10.0,
    checkpoints=(10_000, 100_000),
    outage_duration=60.0,
    outage_rate=300.0,
)
# The quick outage fires 12,000 events in 15 s, so the default buffer of 10,000
# events fills up near its end.
QUICK = Preset(
    runs=1,
    saturation_count=2_000,
    senders=3,
    latency_rate=500.0,
    latency_duration=4.0,
    checkpoints=(2_000, 10_000),
    outage_duration=15.0,
    outage_rate=800.0,
)


@dataclass
class BenchSettings:
    """Settings of one benchmark run, as the command-line help describes them."""

    configs: list[str]
    runs: int
    saturation_count: int
    senders: int
    latency_rate: float
    latency_duration: float
    checkpoints: tuple[int, int]
    outage_duration: float
    outage_rate: float
    mix: str
    quick: bool
    profile_dir: Path | None


@dataclass
class Receipt:
    """One event as a reader saw it: sender, event number and two wall-clock times."""

    sender: str
    seq: int
    fire_time: float
    receive_time: float


# ---------------------------------------------------------------------------------
# Plain bus listener (child process)
# ---------------------------------------------------------------------------------


def listener_main(config_dir: str) -> int:
    """Read the master bus with ``get_event`` and record a receipt for each bench event.

    Commands come on stdin, one per line, and each gets one JSON line in reply on
    stdout: ``count <phase>``, ``take <phase>`` (returns the receipts and forgets
    the phase) and ``stop`` (returns the CPU seconds and the count of late receipts).
    """
    import resource

    import salt.config
    import salt.utils.event

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    opts = salt.config.master_config(os.path.join(config_dir, "master"))
    event = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
    if not event.cpub:
        reply({"error": f"failed to connect to the master event publisher in {opts['sock_dir']}"})
        return 1

    receipts: dict[str, list[tuple[str, int, float, float]]] = collections.defaultdict(list)
    closed: set[str] = set()
    late = 0
    lock = threading.Lock()
    stop = threading.Event()

    def cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def serve_commands() -> None:
        for line in sys.stdin:
            command, _, phase = line.strip().partition(" ")
            if command == "count":
                with lock:
                    reply({"count": len(receipts.get(phase, ()))})
            elif command == "take":
                with lock:
                    phase_receipts = receipts.pop(phase, [])
                    closed.add(phase)
                reply({"receipts": phase_receipts})
            elif command == "stop":
                break
            elif command:
                reply({"error": f"unknown command {command!r}; expected count, take or stop"})
        stop.set()

    reply({"ready": True, "pid": os.getpid()})
    commands = threading.Thread(target=serve_commands, name="commands", daemon=True)
    commands.start()
    prefix = f"{TAG_ROOT}/"
    try:
        while not stop.is_set():
            ret = event.get_event(full=True, wait=0.2, auto_reconnect=True)
            if ret is None:
                continue
            received = time.time()
            tag = ret["tag"]
            if not tag.startswith(prefix):
                continue
            _root, phase, sender, _kind = tag.split("/", 3)
            data = ret["data"]
            with lock:
                if phase in closed:
                    late += 1
                else:
                    receipts[phase].append((sender, data["seq"], data["fire_time"], received))
    finally:
        event.destroy()
    reply({"cpu": cpu_seconds(), "late": late})
    return 0


class ListenerProcess(JsonLineChild):
    """The plain bus listener child, driven over its stdin and stdout."""

    def __init__(self, config_dir: Path, log_path: Path) -> None:
        command = [
            sys.executable,
            "-m",
            "tests.bench.bench_engine",
            "--listener",
            "--config-dir",
            str(config_dir),
        ]
        super().__init__("plain listener", command, log_path)

    def count(self, phase_id: str) -> int:
        return int(self.request(f"count {phase_id}")["count"])

    def take(self, phase_id: str) -> list[Receipt]:
        taken = self.request(f"take {phase_id}", timeout=COMMAND_TIMEOUT * 4)["receipts"]
        return [Receipt(*item) for item in taken]


class FloorProcess(JsonLineChild):
    """``tests/bench/floor_reader.py`` as a child, driven over its stdin and stdout."""

    def __init__(self, config_dir: Path, mode: str, payload_format: str, log_path: Path) -> None:
        command = [
            sys.executable,
            "-m",
            "tests.bench.floor_reader",
            "--config-dir",
            str(config_dir),
            "--mode",
            mode,
            "--format",
            payload_format,
        ]
        super().__init__(f"floor reader ({mode})", command, log_path)

    def count(self, phase_id: str) -> int:
        return int(self.request(f"count {phase_id}")["count"])


# ---------------------------------------------------------------------------------
# Naive relay (child process)
# ---------------------------------------------------------------------------------


class NaiveRelayProcess:
    """The naive relay as a child process. It prints one line once it reads the bus."""

    def __init__(self, config_dir: Path, nats_url: str, log_path: Path) -> None:
        self.config_dir = config_dir
        self.nats_url = nats_url
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "tests.bench.naive_relay",
            "--config-dir",
            str(self.config_dir),
            "--nats-url",
            self.nats_url,
            "--subject",
            NAIVE_SUBJECT,
        ]
        with self.log_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], READY_TIMEOUT)
        line = self.process.stdout.readline() if readable else b""
        if not line:
            raise RuntimeError(
                f"the naive relay did not report that it reads the bus within "
                f"{READY_TIMEOUT:.0f} s; see {self.log_path}"
            )

    def stop(self) -> None:
        """Stop the relay by PID: SIGTERM, then SIGKILL after STOP_TIMEOUT seconds."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("the naive relay (pid %d) ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.wait(timeout=5)
        if process.stdout is not None:
            with contextlib.suppress(OSError):
                process.stdout.close()


# ---------------------------------------------------------------------------------
# NATS subscriber for the engine and the naive relay
# ---------------------------------------------------------------------------------


class NatsReceiver:
    """Subscribe to the engine's and the naive relay's subjects on a thread of its own.

    Receipts are grouped by source and phase id. A receipt for a phase that was
    already taken is counted as late. The client reconnects without limit, so it
    survives the outage phase.
    """

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self.late: collections.Counter[str] = collections.Counter()
        self.decode_errors = 0
        self.slow_consumer_errors = 0
        self._receipts: dict[tuple[str, str], list[Receipt]] = collections.defaultdict(list)
        self._closed: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._ready = threading.Event()
        self._loop: Any = None
        self._stop: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="nats-receiver", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT) or self._error is not None:
            raise RuntimeError(f"the NATS subscriber failed to start: {self._error!r}")

    def _run(self) -> None:
        import asyncio

        try:
            asyncio.run(self._main())
        except Exception as exc:
            self._error = exc
            self._ready.set()

    def _record(self, source: str, phase: str, receipt: Receipt) -> None:
        key = (source, phase)
        with self._lock:
            if key in self._closed:
                self.late[source] += 1
            else:
                self._receipts[key].append(receipt)

    async def _main(self) -> None:
        import asyncio

        import nats
        from nats import errors as nats_errors

        from salt_nats.codec import HEADER_CONTENT_TYPE, decode_payload

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        engine_root = f"{ENGINE_SUBJECT_PREFIX}.{TAG_ROOT}."

        async def on_error(exc: Exception) -> None:
            if isinstance(exc, nats_errors.SlowConsumerError):
                self.slow_consumer_errors += 1
            elif not self._connected.is_set():
                log.debug("subscriber NATS error while disconnected: %r", exc)
            else:
                log.warning("subscriber NATS error: %r", exc)

        async def on_disconnected() -> None:
            self._connected.clear()

        async def on_reconnected() -> None:
            self._connected.set()

        async def on_engine_message(msg: Any) -> None:
            received = time.time()
            # Subject: salt.events.bench.<phase>.<sender>.<kind tokens>
            phase, sender, _rest = msg.subject[len(engine_root) :].split(".", 2)
            try:
                content_type = (msg.headers or {}).get(HEADER_CONTENT_TYPE)
                _tag, data = decode_payload(msg.data, content_type)
                receipt = Receipt(sender, int(data["seq"]), float(data["fire_time"]), received)
            except (ValueError, KeyError, TypeError) as exc:
                self.decode_errors += 1
                log.warning("undecodable engine message on %s: %r", msg.subject, exc)
                return
            self._record("engine", phase, receipt)

        async def on_naive_message(msg: Any) -> None:
            received = time.time()
            tag = NAIVE_TAG_PATTERN.search(msg.data)
            values = NAIVE_DATA_PATTERN.search(msg.data)
            if tag is None or values is None:
                return  # one of the master's own events
            phase, sender = tag.group(1).decode(), tag.group(2).decode()
            receipt = Receipt(sender, int(values.group(1)), float(values.group(2)), received)
            self._record("naive", phase, receipt)

        nc = await nats.connect(
            self.nats_url,
            name="bench-receiver",
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.1,
            connect_timeout=5,
        )
        # Limits far above a phase's volume, so the subscriber never drops on its side.
        limits = {"pending_msgs_limit": 2_000_000, "pending_bytes_limit": 4 * 2**30}
        await nc.subscribe(f"{engine_root}>", cb=on_engine_message, **limits)
        await nc.subscribe(NAIVE_SUBJECT, cb=on_naive_message, **limits)
        await nc.flush()
        self._connected.set()
        self._ready.set()
        await self._stop.wait()
        await nc.drain()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def count(self, source: str, phase_id: str) -> int:
        return len(self._receipts.get((source, phase_id), ()))

    def take(self, source: str, phase_id: str) -> list[Receipt]:
        key = (source, phase_id)
        with self._lock:
            self._closed.add(key)
            return self._receipts.pop(key, [])

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


# ---------------------------------------------------------------------------------
# The master's processes
# ---------------------------------------------------------------------------------


def find_engine_process(master: BenchMaster, timeout: float = ENGINE_START_TIMEOUT) -> Any:
    """Return the psutil process of the engine, from the master log's start line.

    The PID must belong to a descendant of the master. If the engine was
    restarted, the last start line wins.
    """
    import psutil

    assert master.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if master.process.poll() is not None:
            raise RuntimeError(
                f"salt-master exited with status {master.process.returncode}; see {master.log_file}"
            )
        pids = ENGINE_START_PATTERN.findall(master.read_log())
        if pids:
            pid = int(pids[-1])
            descendants = {p.pid for p in psutil.Process(master.process.pid).children(True)}
            if pid not in descendants:
                raise RuntimeError(
                    f"the engine start line names PID {pid}, which is not a process of "
                    f"the salt-master (pid {master.process.pid})"
                )
            return psutil.Process(pid)
        time.sleep(0.2)
    raise TimeoutError(
        f"the master logged no 'salt-nats: starting engine' line within {timeout:.0f} s; "
        f"see {master.log_file}"
    )


def find_event_publisher(master: BenchMaster) -> Any:
    """Return the psutil process of the master's EventPublisher, found by its title."""
    import psutil

    assert master.process is not None
    for process in psutil.Process(master.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if process.name() == "EventPublisher" or any(
                "EventPublisher" in part for part in process.cmdline()
            ):
                return process
    raise RuntimeError(
        f"no EventPublisher process among the children of salt-master (pid {master.process.pid})"
    )


def wait_for_engine_connection(nats_server: Any, timeout: float = ENGINE_START_TIMEOUT) -> None:
    """Wait until nats-server lists a client connection named ``salt-nats ...``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connections = nats_server.monitor("connz")["connections"] or []
        if any(str(c.get("name", "")).startswith("salt-nats ") for c in connections):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the engine did not connect to {nats_server.url} within {timeout:.0f} s")


def stream_messages(nats_server: Any, stream: str) -> int | None:
    """Return the message count of a JetStream stream, or None if it does not exist."""
    data = nats_server.monitor("jsz?streams=true")
    for account in data.get("account_details") or []:
        for detail in account.get("stream_detail") or []:
            if detail.get("name") == stream:
                return int(detail["state"]["messages"])
    return None


def bus_subscribers(publisher: Any, sock_dir: Path) -> int:
    """Return the connections to the master's event publisher socket, not counting its listener.

    Every reader of the bus has one: the engine, the listener, the naive relay
    and the master's own processes that listen to the bus.
    """
    path = str(sock_dir / "master_event_pub.ipc")
    connections = [c for c in publisher.net_connections(kind="unix") if c.laddr == path]
    return max(len(connections) - 1, 0)


def cpu_seconds(process: Any) -> float:
    times = process.cpu_times()
    return times.user + times.system


def rss_mib(process: Any) -> float:
    return process.memory_info().rss / 2**20


# ---------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------


@dataclass
class SourceResult:
    """What one reader received in one phase, with times from ``time.time()``."""

    delivered: int
    duplicates: int
    latencies_ms: list[float] = field(repr=False)
    first_fire: float
    last_receipt: float


@dataclass
class PhaseResult:
    """Figures of one phase, with CPU in seconds per process over the whole phase."""

    kind: str
    run: int
    fired: int
    failed: int
    fire_rate: float
    first_fire: float
    sources: dict[str, SourceResult]
    cpu: dict[str, float]
    bus_subscribers: int
    seconds: float
    background_cores: float

    def lost(self, source: str) -> float:
        result = self.sources.get(source)
        return self.fired - result.delivered if result is not None else math.nan

    def throughput(self, source: str) -> float:
        result = self.sources.get(source)
        if result is None or not result.delivered:
            return math.nan
        span = result.last_receipt - self.first_fire
        return result.delivered / span if span > 0 else math.nan

    def latency_ms(self, source: str, percent: float) -> float:
        result = self.sources.get(source)
        return percentile(result.latencies_ms, percent) if result is not None else math.nan

    def cpu_us_per_event(self, process: str) -> float:
        if process not in self.cpu or not self.fired:
            return math.nan
        return 1e6 * self.cpu[process] / self.fired


def added_p99_ms(phase: PhaseResult) -> float:
    """Return the engine's p99 latency minus the plain listener's, in ms."""
    return phase.latency_ms("engine", 99) - phase.latency_ms("listener", 99)


def summarize_receipts(receipts: Sequence[Receipt]) -> SourceResult:
    """Keep the first receipt of each event and compute its latency."""
    first: dict[tuple[str, int], Receipt] = {}
    for receipt in receipts:
        key = (receipt.sender, receipt.seq)
        if key not in first or receipt.receive_time < first[key].receive_time:
            first[key] = receipt
    return SourceResult(
        delivered=len(first),
        duplicates=len(receipts) - len(first),
        latencies_ms=[1000 * (r.receive_time - r.fire_time) for r in first.values()],
        first_fire=min((r.fire_time for r in first.values()), default=math.nan),
        last_receipt=max((r.receive_time for r in first.values()), default=math.nan),
    )


@dataclass
class OutageSample:
    """One sample during the outage, ``seconds`` after nats-server stopped."""

    seconds: float
    rss_mib: float
    buffered: int | None
    buffered_bytes: int | None
    dropped_buffer_full: int | None


@dataclass
class OutageResult:
    """The engine during one NATS outage and after NATS came back."""

    down_seconds: float
    fired: int
    fire_rate: float
    sent_after: int
    delivered_after: int
    duplicates: int
    dropped_buffer_full: int
    max_buffered: int
    max_buffered_mib: float
    rss_before: float
    rss_when_full: float
    rss_peak: float
    rss_end: float
    rss_after_recovery: float
    seconds_to_full: float
    recovery_seconds: float
    samples: list[OutageSample] = field(repr=False)

    @property
    def buffer_filled(self) -> bool:
        return not math.isnan(self.rss_when_full)

    @property
    def growth_after_full(self) -> float:
        """RSS growth from the moment the buffer was full to the outage's peak, as a share."""
        if not self.buffer_filled:
            return math.nan
        return (self.rss_peak - self.rss_when_full) / self.rss_when_full

    @property
    def bounded(self) -> bool | None:
        if not self.buffer_filled:
            return None
        return self.growth_after_full <= OUTAGE_BOUNDED_GROWTH

    @property
    def unaccounted(self) -> int:
        """Events fired during the outage that the engine neither sent nor counted as dropped."""
        return self.fired - self.dropped_buffer_full - self.sent_after

    @property
    def missed_by_subscriber(self) -> int:
        """Events the engine sent after the outage that the benchmark's subscriber missed.

        In core mode, NATS delivers the events that the engine publishes after it
        reconnects, but before the subscriber has subscribed again, to no one.
        """
        return self.sent_after - self.delivered_after


@dataclass
class ConfigResult:
    """Everything measured for one engine configuration."""

    name: str
    phases: list[PhaseResult]
    rss_start: float
    checkpoints: list[tuple[int, float]]
    rss_peak_before_outage: float
    outage: OutageResult | None
    slow_subscriber_lines: list[str]
    engine_restarts: int
    # The engine's heartbeat report just before the outage: its counters since start.
    counters_before_outage: dict[str, Any]
    late: dict[str, int]
    slow_consumer_errors: int
    decode_errors: int
    stream_messages: int | None
    events_fired: int
    seconds: float
    profile: list[str]
    code_state: str

    def of_kind(self, kind: str) -> list[PhaseResult]:
        return [phase for phase in self.phases if phase.kind == kind]


class ConfigRun:
    """The processes of one engine configuration and the phases run against them."""

    def __init__(self, settings: BenchSettings, name: str, root: Path) -> None:
        from tests.support.nats_server import NatsServer

        self.settings = settings
        self.name = name
        self.root = root
        mode = ENGINE_CONFIGS[name]["mode"]
        self.nats_server = NatsServer(
            root / "nats", name=f"bench-{name}", jetstream=mode == "jetstream"
        )
        engine_options = {
            "servers": [self.nats_server.url],
            "heartbeat_interval": HEARTBEAT_INTERVAL,
            **ENGINE_CONFIGS[name],
        }
        self.master = BenchMaster(root, engines=[{"nats": engine_options}])
        self.receiver: NatsReceiver | None = None
        self.listener: ListenerProcess | None = None
        self.naive: NaiveRelayProcess | None = None
        self.floor: FloorProcess | None = None
        self.engine: Any = None
        self.publisher: Any = None
        self.events_fired = 0
        self.rss_peak = 0.0
        self.listener_late = 0
        self.counters_before_outage: dict[str, Any] = {}
        self.profile: list[str] = []
        self._sampler_stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_rss, name="rss-sampler", daemon=True)

    # -- set-up and tear-down ---------------------------------------------------------

    def start(self) -> None:
        self.nats_server.start()
        self.receiver = NatsReceiver(self.nats_server.url)
        self.receiver.start()
        self.master.start()
        self.master.wait_until_ready()
        self.engine = find_engine_process(self.master)
        self.publisher = find_event_publisher(self.master)
        wait_for_engine_connection(self.nats_server)
        self.listener = ListenerProcess(self.master.conf_dir, self.root / "listener.log")
        self.listener.start()
        self.naive = NaiveRelayProcess(
            self.master.conf_dir, self.nats_server.url, self.root / "naive-relay.log"
        )
        self.naive.start()

    def stop(self) -> None:
        """Stop every process this run started, each by its PID, in reverse order."""
        self._sampler_stop.set()
        if self._sampler.is_alive():
            self._sampler.join(timeout=5)
        for stop in (
            self.stop_naive,
            self.stop_floor,
            self.stop_listener,
            self.master.stop,
            self.receiver.stop if self.receiver is not None else None,
            self.nats_server.stop,
        ):
            if stop is None:
                continue
            try:
                stop()
            except Exception:
                log.exception("stopping a benchmark process failed")

    def start_floor(self, mode: str) -> None:
        self.floor = FloorProcess(
            self.master.conf_dir,
            mode,
            ENGINE_CONFIGS[self.name]["format"],
            self.root / f"floor-{mode}.log",
        )
        self.floor.start()

    def stop_floor(self) -> None:
        if self.floor is not None:
            self.floor.stop()
            self.floor = None

    def stop_naive(self) -> None:
        if self.naive is not None:
            self.naive.stop()
            self.naive = None

    def stop_listener(self) -> None:
        if self.listener is not None:
            final = self.listener.stop() or {}
            self.listener_late = int(final.get("late", 0))
            self.listener = None

    # -- measuring --------------------------------------------------------------------

    def engine_rss(self) -> float:
        value = rss_mib(self.engine)
        self.rss_peak = max(self.rss_peak, value)
        return value

    def _sample_rss(self) -> None:
        """Read the engine's RSS every SAMPLE_INTERVAL seconds, so ``rss_peak`` includes bursts."""
        import psutil

        while not self._sampler_stop.wait(SAMPLE_INTERVAL):
            try:
                self.engine_rss()
            except psutil.Error:
                return  # check_engine() reports the missing engine

    def heartbeat(self) -> dict[str, Any] | None:
        from salt_nats.control import read_heartbeat

        return read_heartbeat(self.master.cache_dir / "salt-nats", ENGINE_INSTANCE)

    def check_engine(self) -> None:
        """Raise if the engine process is gone, for example restarted by the master."""
        if not self.engine.is_running():
            raise RuntimeError(
                f"the engine process (pid {self.engine.pid}) exited; see {self.master.log_file}"
            )

    def _cpu_processes(self) -> dict[str, Any]:
        import psutil

        processes = {"engine": self.engine, "publisher": self.publisher}
        children = (("listener", self.listener), ("naive", self.naive), ("floor", self.floor))
        for name, child in children:
            if child is not None and child.pid is not None:
                processes[name] = psutil.Process(child.pid)
        return processes

    def _counters(self, sources: Sequence[str], phase_id: str) -> dict[str, Callable[[], int]]:
        assert self.receiver is not None
        receiver = self.receiver
        counters: dict[str, Callable[[], int]] = {}
        for source in sources:
            if source == "listener":
                assert self.listener is not None
                counters[source] = lambda listener=self.listener: listener.count(phase_id)
            elif source == "floor":
                assert self.floor is not None
                counters[source] = lambda floor=self.floor: floor.count(phase_id)
            else:
                counters[source] = lambda source=source: receiver.count(source, phase_id)
        return counters

    def _take(self, source: str, phase_id: str) -> list[Receipt]:
        assert self.receiver is not None
        if source == "listener":
            assert self.listener is not None
            return self.listener.take(phase_id)
        return self.receiver.take(source, phase_id)

    def _floor_result(self, phase_id: str) -> SourceResult:
        """The floor reader only counts, so its result has no latencies."""
        assert self.floor is not None
        return SourceResult(
            delivered=self.floor.count(phase_id),
            duplicates=0,
            latencies_ms=[],
            first_fire=math.nan,
            last_receipt=math.nan,
        )

    def run_phase(
        self,
        kind: str,
        run: int,
        counts: Sequence[int],
        rate: float,
        sources: Sequence[str],
    ) -> PhaseResult:
        """Fire ``counts`` events from one sender each and collect what ``sources`` received."""
        phase_id = f"{self.name}-{kind}-r{run}"
        load = BackgroundLoad()
        started = time.monotonic()
        processes = self._cpu_processes()
        subscribers = bus_subscribers(self.publisher, self.master.sock_dir)
        cpu_before = {name: cpu_seconds(process) for name, process in processes.items()}

        expected_seconds = sum(counts) / (rate * len(counts)) if rate else sum(counts) / 200
        totals = fire(
            self.master.conf_dir,
            phase_id,
            counts,
            rate,
            self.settings.mix,
            timeout=expected_seconds + 120,
            allow_failed=True,
        )
        fired = sum(total["fired"] for total in totals)
        failed = sum(total["failed"] for total in totals)
        self.events_fired += fired

        wait_for_counts(self._counters(sources, phase_id), fired)
        cpu = {name: cpu_seconds(process) - cpu_before[name] for name, process in processes.items()}
        results = {
            source: self._floor_result(phase_id)
            if source == "floor"
            else summarize_receipts(self._take(source, phase_id))
            for source in sources
        }
        fire_times = [result.first_fire for result in results.values() if result.delivered]
        first_fire = min(fire_times, default=math.nan)
        self.check_engine()
        self.engine_rss()
        return PhaseResult(
            kind=kind,
            run=run,
            fired=fired,
            failed=failed,
            fire_rate=fired / max(total["elapsed"] for total in totals),
            first_fire=first_fire,
            sources=results,
            cpu=cpu,
            bus_subscribers=subscribers,
            seconds=time.monotonic() - started,
            background_cores=load.cores(),
        )

    # -- the phases of one configuration ----------------------------------------------

    def measure(self) -> ConfigResult:
        """Run every phase against the started processes and return the figures."""
        started = time.monotonic()
        settings = self.settings
        code_state = git_state()
        rss_start = self.engine_rss()
        self._sampler.start()
        pending_checkpoints = list(settings.checkpoints)
        checkpoints: list[tuple[int, float]] = []

        def note_checkpoints() -> None:
            # RSS is read after a phase has drained, at the first quiet point at or
            # past each checkpoint.
            while pending_checkpoints and self.events_fired >= pending_checkpoints[0]:
                pending_checkpoints.pop(0)
                checkpoints.append((self.events_fired, self.engine_rss()))

        warmup = self.run_phase("warmup", 0, [WARMUP_COUNT], WARMUP_RATE, ("engine", "listener"))
        for source in ("engine", "listener"):
            if not warmup.sources[source].delivered:
                raise RuntimeError(
                    f"no warm-up event reached the {SOURCE_LABELS[source]} in {self.name}; "
                    f"see the logs in {self.root}"
                )
        note_checkpoints()

        phases: list[PhaseResult] = []
        for run in range(1, settings.runs + 1):
            profiler = self.start_profiler("saturation") if run == 1 else None
            try:
                phase = self.run_phase(
                    "saturation",
                    run,
                    split_count(settings.saturation_count, settings.senders),
                    0.0,
                    SOURCES,
                )
            finally:
                if profiler is not None:
                    self.stop_profiler(profiler, "saturation")
            phases.append(phase)
            print_progress(self.name, phase)
            note_checkpoints()
        self.stop_naive()

        latency_count = max(1, round(settings.latency_rate * settings.latency_duration))
        for run in range(1, settings.runs + 1):
            profiler = self.start_profiler("latency") if run == 1 else None
            try:
                phase = self.run_phase(
                    "latency", run, [latency_count], settings.latency_rate, ("engine", "listener")
                )
            finally:
                if profiler is not None:
                    self.stop_profiler(profiler, "latency")
            phases.append(phase)
            print_progress(self.name, phase)
            note_checkpoints()
        self.stop_listener()

        if pending_checkpoints:
            remaining = pending_checkpoints[-1] - self.events_fired
            phase = self.run_phase(
                "sustained", 1, split_count(remaining, settings.senders), 0.0, ("engine",)
            )
            phases.append(phase)
            print_progress(self.name, phase)
            note_checkpoints()

        # After the sustained phase, so that the memory checkpoints come from the
        # same phases as without the floor readers.
        for mode in FLOOR_MODES:
            self.start_floor(mode)
            try:
                for run in range(1, settings.runs + 1):
                    phase = self.run_phase(
                        f"floor-{mode}",
                        run,
                        split_count(settings.saturation_count, settings.senders),
                        0.0,
                        ("engine", "floor"),
                    )
                    phases.append(phase)
                    print_progress(self.name, phase)
            finally:
                self.stop_floor()
        rss_peak_before_outage = self.rss_peak

        outage = self.run_outage()
        print(
            f"{self.name} outage: NATS down {outage.down_seconds:.0f} s, fired {outage.fired:,}, "
            f"buffered at most {outage.max_buffered:,}, dropped {outage.dropped_buffer_full:,}, "
            f"sent after {outage.sent_after:,}, received {outage.delivered_after:,}; "
            f"RSS {outage.rss_before:.1f} -> peak {outage.rss_peak:.1f} MiB",
            flush=True,
        )

        stream_count = None
        if ENGINE_CONFIGS[self.name]["mode"] == "jetstream":
            stream_count = stream_messages(self.nats_server, ENGINE_STREAM)
        assert self.receiver is not None
        start_lines = ENGINE_START_PATTERN.findall(self.master.read_log())
        return ConfigResult(
            name=self.name,
            phases=phases,
            rss_start=rss_start,
            checkpoints=checkpoints,
            rss_peak_before_outage=rss_peak_before_outage,
            outage=outage,
            slow_subscriber_lines=self.master.slow_subscriber_lines(0),
            engine_restarts=max(len(start_lines) - 1, 0),
            counters_before_outage=self.counters_before_outage,
            late={**self.receiver.late, "listener": self.listener_late},
            slow_consumer_errors=self.receiver.slow_consumer_errors,
            decode_errors=self.receiver.decode_errors,
            stream_messages=stream_count,
            events_fired=self.events_fired,
            seconds=time.monotonic() - started,
            profile=self.profile,
            code_state=code_state,
        )

    def _outage_sample(self, down_at: float) -> OutageSample:
        heartbeat = self.heartbeat() or {}
        dropped = heartbeat.get("dropped") or {}
        return OutageSample(
            seconds=time.monotonic() - down_at,
            rss_mib=self.engine_rss(),
            buffered=heartbeat.get("buffered"),
            buffered_bytes=heartbeat.get("buffered_bytes"),
            dropped_buffer_full=dropped.get("buffer_full", 0) if heartbeat else None,
        )

    def _sent_count(self, heartbeat: dict[str, Any]) -> int:
        """Return the engine's count of sent events: acknowledged ones in JetStream mode."""
        jetstream = ENGINE_CONFIGS[self.name]["mode"] == "jetstream"
        return int(heartbeat.get("acknowledged" if jetstream else "published", 0))

    def _current_heartbeat(self) -> dict[str, Any]:
        """Wait for the engine's next heartbeat, so its counters are current, and return it."""
        time.sleep(HEARTBEAT_INTERVAL + 0.5)
        heartbeat = self.heartbeat()
        if heartbeat is None:
            raise RuntimeError(
                f"the engine wrote no heartbeat in {self.master.cache_dir / 'salt-nats'}"
            )
        return heartbeat

    def run_outage(self) -> OutageResult:
        """Stop nats-server while two senders fire, start it again and wait for the backlog."""
        from salt_nats.config import EngineSettings

        assert self.receiver is not None
        receiver = self.receiver
        settings = self.settings
        phase_id = f"{self.name}-outage"
        count = max(OUTAGE_SENDERS, round(settings.outage_rate * settings.outage_duration))
        before = self._current_heartbeat()
        self.counters_before_outage = before
        dropped_before = (before.get("dropped") or {}).get("buffer_full", 0)
        sent_before = self._sent_count(before)
        rss_before = self.engine_rss()
        outcome: dict[str, Any] = {}

        def fire_during_outage() -> None:
            try:
                outcome["totals"] = fire(
                    self.master.conf_dir,
                    phase_id,
                    split_count(count, OUTAGE_SENDERS),
                    settings.outage_rate / OUTAGE_SENDERS,
                    settings.mix,
                    timeout=settings.outage_duration + 120,
                    allow_failed=True,
                )
            except BaseException as exc:  # re-raised on the main thread below
                outcome["error"] = exc

        self.nats_server.stop()
        down_at = time.monotonic()
        sender = threading.Thread(target=fire_during_outage, name="outage-sender", daemon=True)
        sender.start()
        samples: list[OutageSample] = []
        deadline = down_at + settings.outage_duration + 150
        while sender.is_alive() and time.monotonic() < deadline:
            samples.append(self._outage_sample(down_at))
            sender.join(SAMPLE_INTERVAL)
        samples.append(self._outage_sample(down_at))
        self.nats_server.start()
        up_at, up_wall = time.monotonic(), time.time()
        if sender.is_alive():
            raise TimeoutError(f"the outage senders did not finish within {deadline - down_at} s")
        if "error" in outcome:
            raise outcome["error"]

        totals = outcome["totals"]
        fired = sum(total["fired"] for total in totals)
        self.events_fired += fired
        if not receiver.wait_connected(30):
            raise TimeoutError("the NATS subscriber did not reconnect within 30 s")
        wait_for_counts(
            {"engine": lambda: receiver.count("engine", phase_id)},
            fired,
            quiet_period=OUTAGE_QUIET_PERIOD,
            max_time=OUTAGE_MAX_DRAIN_TIME,
        )
        delivered = summarize_receipts(receiver.take("engine", phase_id))
        self.check_engine()
        after = self._current_heartbeat()
        dropped_after = (after.get("dropped") or {}).get("buffer_full", 0)

        # The benchmark keeps the engine's default buffer limits.
        buffer_max_events = EngineSettings().buffer_max_events
        full = [
            sample
            for sample in samples
            if (sample.buffered or 0) >= buffer_max_events
            or (sample.dropped_buffer_full or 0) > dropped_before
        ]
        buffered = [sample.buffered or 0 for sample in samples]
        buffered_bytes = [sample.buffered_bytes or 0 for sample in samples]
        return OutageResult(
            down_seconds=up_at - down_at,
            fired=fired,
            fire_rate=fired / max(total["elapsed"] for total in totals),
            sent_after=self._sent_count(after) - sent_before,
            delivered_after=delivered.delivered,
            duplicates=delivered.duplicates,
            dropped_buffer_full=dropped_after - dropped_before,
            max_buffered=max(buffered, default=0),
            max_buffered_mib=max(buffered_bytes, default=0) / 2**20,
            rss_before=rss_before,
            rss_when_full=full[0].rss_mib if full else math.nan,
            rss_peak=max(sample.rss_mib for sample in samples),
            rss_end=samples[-1].rss_mib,
            rss_after_recovery=self.engine_rss(),
            seconds_to_full=full[0].seconds if full else math.nan,
            recovery_seconds=delivered.last_receipt - up_wall if delivered.delivered else math.nan,
            samples=samples,
        )

    # -- profile ------------------------------------------------------------------------

    def _profile_path(self, kind: str) -> Path:
        assert self.settings.profile_dir is not None
        return self.settings.profile_dir / f"{self.name}-{kind}.txt"

    def start_profiler(self, kind: str) -> subprocess.Popen[bytes] | None:
        """Start py-spy on the engine when ``--profile`` is set."""
        if self.settings.profile_dir is None:
            return None
        output = self._profile_path(kind)
        command = [
            find_py_spy(),
            "record",
            "--pid",
            str(self.engine.pid),
            "--rate",
            "1000",
            "--function",
            "--gil",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(output),
        ]
        with (self.root / "py-spy.log").open("ab") as log_file:
            return subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
            )

    def stop_profiler(self, profiler: subprocess.Popen[bytes], kind: str) -> None:
        """Stop py-spy with SIGINT, which makes it write its output, and summarize it."""
        output = self._profile_path(kind)
        if profiler.poll() is None:
            profiler.send_signal(signal.SIGINT)
            try:
                profiler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.warning("py-spy (pid %d) did not stop within 30 s; killing it", profiler.pid)
                profiler.kill()
                profiler.wait(timeout=5)
        if output.exists():
            self.profile += summarize_profile(output)
        else:
            self.profile.append(f"py-spy wrote no profile {output}; see {self.root / 'py-spy.log'}")


def find_py_spy() -> str:
    beside_python = Path(sys.executable).parent / "py-spy"
    found = str(beside_python) if beside_python.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit(
            "error: --profile needs py-spy; install it with: .venv/bin/pip install py-spy"
        )
    return found


def summarize_profile(path: Path, top: int = 15) -> list[str]:
    """Return the frames with the most samples in a py-spy raw profile, by self and total time.

    Each line of the raw format is ``frame;frame;...;frame <samples>``, outermost
    frame first.

    py-spy runs with ``--gil``, so it samples the engine only while one of its
    threads holds the GIL, which is when Python code runs. Waits and system calls
    that release the GIL, such as the socket write, are left out. Without
    ``--gil``, py-spy 0.4.3 counted waits such as ``EpollSelector.select`` as busy,
    and more samples than the engine's CPU time from psutil.
    """
    self_samples: collections.Counter[str] = collections.Counter()
    total_samples: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        self_samples[frames[-1]] += count
        for frame in set(frames):
            total_samples[frame] += count
    if not samples:
        return [f"{path}: no samples"]
    lines = [f"{path.name}: {samples:,} samples while the engine held the GIL"]
    lines.append("  self time:")
    for frame, count in self_samples.most_common(top):
        lines.append(f"    {100 * count / samples:5.1f} %  {frame}")
    lines.append("  total time (frame and its callees):")
    for frame, count in total_samples.most_common(top):
        lines.append(f"    {100 * count / samples:5.1f} %  {frame}")
    return lines


def print_progress(config: str, phase: PhaseResult) -> None:
    parts = [f"fired {phase.fired:,} at {phase.fire_rate:,.0f}/s"]
    for source, result in phase.sources.items():
        parts.append(f"{source} {result.delivered:,} (p99 {phase.latency_ms(source, 99):,.1f} ms)")
    parts.append(
        f"CPU/event engine {phase.cpu_us_per_event('engine'):,.0f} µs, "
        f"publisher {phase.cpu_us_per_event('publisher'):,.0f} µs "
        f"serving {phase.bus_subscribers} bus subscribers"
    )
    if "floor" in phase.cpu:
        parts.append(f"floor reader {phase.cpu_us_per_event('floor'):,.0f} µs")
    print(
        f"{config} {phase.kind} {phase.run}: " + "; ".join(parts) + f" ({phase.seconds:.0f} s)",
        flush=True,
    )


def run_config(settings: BenchSettings, name: str, root: Path) -> ConfigResult:
    """Start the processes of one configuration, measure, and stop them all."""
    run = ConfigRun(settings, name, root / name)
    try:
        run.start()
        assert run.master.process is not None
        print(
            f"{name}: nats-server on {run.nats_server.url}, salt-master (pid "
            f"{run.master.process.pid}) with the engine (pid {run.engine.pid}) in {run.root}",
            flush=True,
        )
        return run.measure()
    finally:
        run.stop()


# ---------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------

Cell = Callable[[ConfigResult], "list[float] | str"]


def per_run(kind: str, value_of: Callable[[PhaseResult], float]) -> Cell:
    return lambda config: [value_of(phase) for phase in config.of_kind(kind)]


def ratio(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator) or not denominator:
        return math.nan
    return numerator / denominator


def _mib(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.1f}"


def _checkpoint(index: int) -> Cell:
    def cell(config: ConfigResult) -> str:
        if len(config.checkpoints) <= index:
            return "n/a"
        count, rss = config.checkpoints[index]
        return f"{rss:,.1f} (at {count:,})"

    return cell


def _checkpoint_growth(config: ConfigResult) -> str:
    if len(config.checkpoints) < 2:
        return "n/a"
    first, second = config.checkpoints[0][1], config.checkpoints[1][1]
    return f"{100 * (second - first) / first:+.1f}"


def _outage(format_value: Callable[[OutageResult], str]) -> Cell:
    return lambda config: format_value(config.outage) if config.outage is not None else "n/a"


def _number(value: float, digits: int, sign: str = "") -> str:
    return "n/a" if math.isnan(value) else f"{value:{sign},.{digits}f}"


def _bounded(outage: OutageResult) -> str:
    if outage.bounded is None:
        return "n/a (the buffer did not fill)"
    return "yes" if outage.bounded else "no"


PhaseRow = tuple[str, Callable[[PhaseResult], float], int]


def _saturation_rows(settings: BenchSettings) -> list[PhaseRow]:
    def throughput_ratio(source: str) -> Callable[[PhaseResult], float]:
        return lambda p: ratio(p.throughput(source), p.throughput("listener"))

    rows: list[PhaseRow] = [
        ("events fired per run", lambda p: p.fired, 0),
        (f"fire rate of {settings.senders} senders (events/s)", lambda p: p.fire_rate, 0),
    ]
    for source in SOURCES:
        label = SOURCE_LABELS[source]
        rows.append((f"throughput, {label} (events/s)", lambda p, s=source: p.throughput(s), 0))
    rows.append(("throughput, engine / plain listener", throughput_ratio("engine"), 3))
    rows.append(("throughput, naive relay / plain listener", throughput_ratio("naive"), 3))
    for source in SOURCES:
        rows.append((f"lost, {SOURCE_LABELS[source]}", lambda p, s=source: p.lost(s), 0))
    rows += [
        ("latency p99, engine (ms)", lambda p: p.latency_ms("engine", 99), 1),
        ("latency p99, plain listener (ms)", lambda p: p.latency_ms("listener", 99), 1),
        ("CPU per event, engine (µs)", lambda p: p.cpu_us_per_event("engine"), 0),
        ("CPU per event, EventPublisher (µs)", lambda p: p.cpu_us_per_event("publisher"), 0),
        ("CPU engine / EventPublisher", lambda p: ratio(p.cpu["engine"], p.cpu["publisher"]), 2),
        ("CPU per event, plain listener (µs)", lambda p: p.cpu_us_per_event("listener"), 0),
        ("CPU per event, naive relay (µs)", lambda p: p.cpu_us_per_event("naive"), 0),
    ]
    return rows


def _latency_rows() -> list[PhaseRow]:
    return [
        ("fire rate (events/s)", lambda p: p.fire_rate, 0),
        ("latency p50, engine (ms)", lambda p: p.latency_ms("engine", 50), 2),
        ("latency p50, plain listener (ms)", lambda p: p.latency_ms("listener", 50), 2),
        ("latency p99, engine (ms)", lambda p: p.latency_ms("engine", 99), 2),
        ("latency p99, plain listener (ms)", lambda p: p.latency_ms("listener", 99), 2),
        ("added p99, engine minus listener (ms)", added_p99_ms, 2),
        ("lost, engine", lambda p: p.lost("engine"), 0),
        ("lost, plain listener", lambda p: p.lost("listener"), 0),
        ("CPU per event, engine (µs)", lambda p: p.cpu_us_per_event("engine"), 0),
        ("CPU per event, EventPublisher (µs)", lambda p: p.cpu_us_per_event("publisher"), 0),
        ("CPU engine / EventPublisher", lambda p: ratio(p.cpu["engine"], p.cpu["publisher"]), 2),
    ]


def _floor_rows() -> list[PhaseRow]:
    return [
        ("lost, floor reader", lambda p: p.lost("floor"), 0),
        ("CPU per event, floor reader (µs)", lambda p: p.cpu_us_per_event("floor"), 0),
        ("CPU per event, engine (µs)", lambda p: p.cpu_us_per_event("engine"), 0),
        ("CPU per event, EventPublisher (µs)", lambda p: p.cpu_us_per_event("publisher"), 0),
        (
            "CPU floor reader / EventPublisher",
            lambda p: ratio(p.cpu["floor"], p.cpu["publisher"]),
            2,
        ),
        ("CPU engine / EventPublisher", lambda p: ratio(p.cpu["engine"], p.cpu["publisher"]), 2),
    ]


def _sustained_rows(settings: BenchSettings) -> list[PhaseRow]:
    return [
        ("events fired", lambda p: p.fired, 0),
        (f"fire rate of {settings.senders} senders (events/s)", lambda p: p.fire_rate, 0),
        ("throughput, engine (events/s)", lambda p: p.throughput("engine"), 0),
        ("lost, engine", lambda p: p.lost("engine"), 0),
        ("latency p99, engine (ms)", lambda p: p.latency_ms("engine", 99), 0),
    ]


def _drops(config: ConfigResult) -> str:
    dropped = config.counters_before_outage.get("dropped") or {}
    drops = {reason: count for reason, count in dropped.items() if count}
    if not drops:
        return "0"
    return ", ".join(f"{count:,} {reason}" for reason, count in sorted(drops.items()))


def _memory_rows(settings: BenchSettings) -> list[tuple[str, Cell, int]]:
    first, second = settings.checkpoints
    return [
        ("engine RSS at start (MiB)", lambda c: _mib(c.rss_start), 1),
        (f"engine RSS after {first:,} events (MiB)", _checkpoint(0), 1),
        (f"engine RSS after {second:,} events (MiB)", _checkpoint(1), 1),
        ("engine RSS change between those two (%)", _checkpoint_growth, 1),
        ("engine RSS peak before the outage (MiB)", lambda c: _mib(c.rss_peak_before_outage), 1),
    ]


def _outage_rows() -> list[tuple[str, Callable[[OutageResult], str]]]:
    return [
        ("NATS down (s)", lambda o: f"{o.down_seconds:.0f}"),
        ("events fired (events/s)", lambda o: f"{o.fired:,} ({o.fire_rate:,.0f})"),
        ("most events buffered (MiB)", lambda o: f"{o.max_buffered:,} ({o.max_buffered_mib:.1f})"),
        ("seconds until the buffer was full", lambda o: _number(o.seconds_to_full, 0)),
        ("dropped, buffer full", lambda o: f"{o.dropped_buffer_full:,}"),
        ("sent by the engine after NATS came back", lambda o: f"{o.sent_after:,}"),
        ("fired minus dropped minus sent", lambda o: f"{o.unaccounted:,}"),
        ("received by the subscriber after NATS came back", lambda o: f"{o.delivered_after:,}"),
        ("engine RSS before (MiB)", lambda o: _mib(o.rss_before)),
        ("engine RSS when the buffer was full (MiB)", lambda o: _mib(o.rss_when_full)),
        ("engine RSS peak (MiB)", lambda o: _mib(o.rss_peak)),
        ("engine RSS at the end (MiB)", lambda o: _mib(o.rss_end)),
        (
            "engine RSS growth after the buffer was full (%)",
            lambda o: _number(100 * o.growth_after_full, 1, "+"),
        ),
        ("engine RSS bounded", _bounded),
        ("NATS restart to last delivery (s)", lambda o: _number(o.recovery_seconds, 1)),
        ("engine RSS after the backlog was sent (MiB)", lambda o: _mib(o.rss_after_recovery)),
    ]


def build_rows(settings: BenchSettings) -> list[tuple[str, Cell, int]]:
    """Return the table rows: label, cell of one configuration, decimal places."""
    rows: list[tuple[str, Cell, int]] = []
    for label, value_of, digits in _saturation_rows(settings):
        rows.append((f"saturation: {label}", per_run("saturation", value_of), digits))
    rate = f"{settings.latency_rate:g}/s"
    for label, value_of, digits in _latency_rows():
        rows.append((f"{rate}: {label}", per_run("latency", value_of), digits))
    for label, value_of, digits in _sustained_rows(settings):
        rows.append((f"sustained, engine only: {label}", per_run("sustained", value_of), digits))
    for mode, mode_label in FLOOR_MODES.items():
        for label, value_of, digits in _floor_rows():
            rows.append(
                (f"floor, {mode_label}: {label}", per_run(f"floor-{mode}", value_of), digits)
            )
    rows.append(("engine drop counters before the outage", _drops, 0))
    rows.append(
        (
            "engine bus disconnects before the outage",
            lambda c: f"{c.counters_before_outage.get('bus_disconnects', 0):,}",
            0,
        )
    )
    rows += _memory_rows(settings)
    for label, format_value in _outage_rows():
        rows.append((f"outage: {label}", _outage(format_value), 0))
    rows.append(
        ("master slow-subscriber warnings", lambda c: f"{len(c.slow_subscriber_lines):,}", 0)
    )
    rows.append(
        (
            "other processes on the machine (CPU cores busy)",
            lambda c: [p.background_cores for p in c.phases],
            2,
        )
    )
    return rows


def format_table(settings: BenchSettings, results: Sequence[ConfigResult]) -> str:
    """Return a Markdown table: one row per figure, one column per configuration."""
    header = f"| median (min to max) of {settings.runs} runs | " + " | ".join(
        result.name for result in results
    )
    lines = [header + " |", "|---|" + "---:|" * len(results)]
    for label, cell, digits in build_rows(settings):
        cells = []
        for result in results:
            value = cell(result)
            cells.append(value if isinstance(value, str) else format_summary(value, digits))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _median(values: Sequence[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return statistics.median(finite) if finite else math.nan


@dataclass
class TargetCheck:
    """One target for one configuration, with the figure that decides it."""

    config: str
    target: str
    figure: str
    met: bool | None


def check_targets(results: Sequence[ConfigResult]) -> list[TargetCheck]:
    """Compare the medians of each configuration with the targets."""
    checks: list[TargetCheck] = []
    json_cpu_ratio: float | None = None
    for result in results:
        name = result.name
        saturation, latency = result.of_kind("saturation"), result.of_kind("latency")
        jetstream = ENGINE_CONFIGS[name]["mode"] == "jetstream"

        throughput = _median(
            [ratio(p.throughput("engine"), p.throughput("listener")) for p in saturation]
        )
        lost = [p.lost("engine") for p in saturation]
        minimum = TARGET_THROUGHPUT_JETSTREAM if jetstream else TARGET_THROUGHPUT_CORE
        if jetstream:
            met = throughput >= minimum
            target = f"throughput >= {minimum} of the plain listener"
        else:
            met = throughput >= minimum and max(lost, default=0) == 0
            target = f"throughput >= {minimum} of the plain listener, none lost"
        checks.append(TargetCheck(name, target, f"{throughput:.3f}, lost per run {lost}", met))

        added = _median([added_p99_ms(p) for p in latency])
        checks.append(
            TargetCheck(
                name,
                f"added p99 latency at the fixed rate <= {TARGET_ADDED_P99_MS} ms",
                f"{added:+.2f} ms",
                added <= TARGET_ADDED_P99_MS,
            )
        )

        cpu = _median([ratio(p.cpu["engine"], p.cpu["publisher"]) for p in saturation])
        if ENGINE_CONFIGS[name]["format"] == "json":
            if name == "json-core":
                json_cpu_ratio = cpu
            checks.append(
                TargetCheck(
                    name,
                    f"engine CPU per event <= {TARGET_CPU_RATIO} of the EventPublisher's",
                    f"{cpu:.2f}",
                    cpu <= TARGET_CPU_RATIO,
                )
            )
        else:
            met_msgpack = None if json_cpu_ratio is None else cpu < json_cpu_ratio
            compared = "" if json_cpu_ratio is None else f" (json-core {json_cpu_ratio:.2f})"
            checks.append(
                TargetCheck(
                    name,
                    "engine CPU per event below that of json-core, relative to the EventPublisher",
                    f"{cpu:.2f}{compared}",
                    met_msgpack,
                )
            )

        if len(result.checkpoints) >= 2:
            first, second = result.checkpoints[0][1], result.checkpoints[1][1]
            growth = (second - first) / first
            checks.append(
                TargetCheck(
                    name,
                    f"RSS within {100 * TARGET_RSS_GROWTH:.0f} % from the first to the second "
                    "checkpoint",
                    f"{100 * growth:+.1f} % ({first:.1f} -> {second:.1f} MiB)",
                    abs(growth) <= TARGET_RSS_GROWTH,
                )
            )
        if result.outage is not None:
            outage = result.outage
            checks.append(
                TargetCheck(
                    name,
                    "RSS bounded during the outage",
                    f"peak {outage.rss_peak:.1f} MiB, growth after full "
                    + (
                        "n/a"
                        if math.isnan(outage.growth_after_full)
                        else f"{100 * outage.growth_after_full:+.1f} %"
                    ),
                    outage.bounded,
                )
            )
    return checks


def git_state() -> str:
    """Return the commit of the working tree, and whether salt_nats/ has local changes."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "salt_nats"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    if not changed:
        return f"{commit}, salt_nats/ unchanged"
    return f"{commit}, with {len(changed)} changed or new files in salt_nats/"


def print_report(
    settings: BenchSettings, results: Sequence[ConfigResult], elapsed: float, command: str
) -> None:
    from tests.bench.fire_events import packed_sizes

    sizes = ", ".join(f"{kind} {size:,} B" for kind, size in packed_sizes().items())
    latency_count = max(1, round(settings.latency_rate * settings.latency_duration))
    print()
    print(f"Command: {command}")
    print(f"Machine: {describe_machine()}")
    states = {result.code_state for result in results}
    if len(states) == 1:
        print(f"salt-nats: {states.pop()}")
    else:
        print("salt-nats: " + "; ".join(f"{r.name} at {r.code_state}" for r in results))
    print(
        f"Saturation: {settings.saturation_count:,} events from {settings.senders} senders as "
        f"fast as possible. Fixed rate: {latency_count:,} events from 1 sender at "
        f"{settings.latency_rate:g}/s. Memory checkpoints at {settings.checkpoints[0]:,} and "
        f"{settings.checkpoints[1]:,} events. Outage: {settings.outage_duration:g} s at "
        f"{settings.outage_rate:g} events/s. Mix: {settings.mix} ({sizes})."
    )
    print()
    print(format_table(settings, results))
    print()
    print("Targets (medians):")
    for check in check_targets(results):
        verdict = {True: "met", False: "MISSED", None: "n/a"}[check.met]
        print(f"- {check.config}: {check.target}: {verdict} ({check.figure})")
    print()
    for result in results:
        notes = [f"{result.events_fired:,} events fired", f"{result.seconds:.0f} s"]
        for phase in result.phases:
            if phase.failed:
                notes.append(
                    f"{phase.kind} {phase.run}: {phase.failed} events not taken by the bus"
                )
            for source, source_result in phase.sources.items():
                if source_result.duplicates:
                    notes.append(
                        f"{phase.kind} {phase.run}: {source_result.duplicates} duplicates "
                        f"at the {SOURCE_LABELS[source]}"
                    )
        if result.outage is not None and result.outage.duplicates:
            notes.append(f"outage: {result.outage.duplicates} duplicates")
        for source, count in sorted(result.late.items()):
            if not count:
                continue
            notes.append(
                f"{count:,} events reached the {SOURCE_LABELS[source]} after their phase ended"
            )
        subscribers = sorted({(p.kind, p.bus_subscribers) for p in result.phases})
        notes.append(
            "bus subscribers of the EventPublisher: "
            + ", ".join(f"{kind} {count}" for kind, count in subscribers)
        )
        if result.slow_consumer_errors:
            notes.append(f"{result.slow_consumer_errors} slow-consumer errors at the subscriber")
        if result.decode_errors:
            notes.append(f"{result.decode_errors} undecodable engine messages")
        if result.engine_restarts:
            notes.append(f"the master restarted the engine {result.engine_restarts} times")
        if result.stream_messages is not None:
            notes.append(f"{result.stream_messages:,} messages in stream {ENGINE_STREAM}")
        notes.extend(f"master: {line}" for line in result.slow_subscriber_lines[:3])
        print(f"{result.name}: " + "; ".join(notes))
        for line in result.profile:
            print(line)
    print(f"Total time: {elapsed:.0f} s")


def result_to_json(result: ConfigResult) -> dict[str, Any]:
    data = asdict(result)
    for phase_data, phase in zip(data["phases"], result.phases, strict=True):
        for source, source_data in phase_data["sources"].items():
            source_data.pop("latencies_ms")
            source_data.update(
                lost=phase.lost(source),
                throughput=phase.throughput(source),
                latency_p50_ms=phase.latency_ms(source, 50),
                latency_p99_ms=phase.latency_ms(source, 99),
            )
    return data


# ---------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------


def bench_main(settings: BenchSettings, args: argparse.Namespace, command: str) -> int:
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="salt-nats-bench-engine-"))
    if settings.profile_dir is not None:
        settings.profile_dir.mkdir(parents=True, exist_ok=True)
        find_py_spy()
    results: list[ConfigResult] = []
    try:
        for name in settings.configs:
            results.append(run_config(settings, name, root))
        print_report(settings, results, time.monotonic() - started, command)
        if args.json:
            Path(args.json).write_text(
                json.dumps([result_to_json(r) for r in results], indent=2, default=str) + "\n"
            )
    finally:
        if args.keep:
            print(f"Kept configs and logs in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _config_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ENGINE_CONFIGS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"invalid configurations {text!r}: expected a comma-separated list of "
            f"{', '.join(ENGINE_CONFIGS)}"
        )
    return names


def _checkpoints(text: str) -> tuple[int, int]:
    try:
        first, second = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid checkpoints {text!r}: expected two event counts, such as 10000,100000"
        ) from None
    if not 0 < first < second:
        raise argparse.ArgumentTypeError(
            f"invalid checkpoints {text!r}: expected 0 < first < second"
        )
    return first, second


def build_parser() -> argparse.ArgumentParser:
    from tests.bench.fire_events import MIXES

    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_engine",
        description="Measure the salt-nats engine in a real salt-master against a plain "
        "bus listener and a naive relay: throughput, loss, latency, CPU and memory.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run of about 3 minutes: 1 run, smaller phases, a 15 s outage",
    )
    parser.add_argument(
        "--configs",
        type=_config_list,
        default=list(ENGINE_CONFIGS),
        help=f"comma-separated engine configurations out of {', '.join(ENGINE_CONFIGS)} "
        "(default: all)",
    )
    parser.add_argument(
        "--runs", type=positive_int, help=f"runs of each phase (default: {FULL.runs})"
    )
    parser.add_argument(
        "--saturation-count",
        type=positive_int,
        help=f"events per saturation run, all senders together "
        f"(default: {FULL.saturation_count}, quick: {QUICK.saturation_count})",
    )
    parser.add_argument(
        "--senders",
        type=positive_int,
        help=f"fire_events processes in the saturation and sustained phases "
        f"(default: {FULL.senders})",
    )
    parser.add_argument(
        "--latency-rate",
        type=positive_float,
        help=f"events/s of the fixed-rate phase (default: {FULL.latency_rate:g})",
    )
    parser.add_argument(
        "--latency-duration",
        type=positive_float,
        help=f"seconds of the fixed-rate phase (default: {FULL.latency_duration:g}, "
        f"quick: {QUICK.latency_duration:g})",
    )
    parser.add_argument(
        "--checkpoints",
        type=_checkpoints,
        help="event counts at which the engine's RSS is read, as FIRST,SECOND "
        f"(default: {FULL.checkpoints[0]},{FULL.checkpoints[1]}, "
        f"quick: {QUICK.checkpoints[0]},{QUICK.checkpoints[1]})",
    )
    parser.add_argument(
        "--outage-duration",
        type=positive_float,
        help=f"seconds of firing while nats-server is stopped "
        f"(default: {FULL.outage_duration:g}, quick: {QUICK.outage_duration:g})",
    )
    parser.add_argument(
        "--outage-rate",
        type=positive_float,
        help=f"events/s during the outage, from two senders "
        f"(default: {FULL.outage_rate:g}, quick: {QUICK.outage_rate:g})",
    )
    parser.add_argument(
        "--mix",
        choices=MIXES,
        default="real",
        help="event sizes, as in fire_events.py (default: real)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record the engine's Python code with py-spy (samples while it holds the GIL) "
        "during the first saturation and the first "
        "fixed-rate run of each configuration, write the raw profiles to DIR and print "
        "the top frames "
        "(py-spy slows the engine, so the figures of that run are not comparable)",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the figures of every phase to this JSON file"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder with configs and logs"
    )
    # The plain listener child: this script started by ConfigRun with --listener.
    parser.add_argument("--listener", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config-dir", help=argparse.SUPPRESS)
    return parser


def settings_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> BenchSettings:
    """Fill the options not given from the full or quick preset, and check them."""
    from tests.bench.fire_events import MAX_COUNT

    preset = QUICK if args.quick else FULL

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return getattr(preset, name) if value is None else value

    settings = BenchSettings(
        configs=args.configs,
        runs=pick("runs"),
        saturation_count=pick("saturation_count"),
        senders=pick("senders"),
        latency_rate=pick("latency_rate"),
        latency_duration=pick("latency_duration"),
        checkpoints=pick("checkpoints"),
        outage_duration=pick("outage_duration"),
        outage_rate=pick("outage_rate"),
        mix=args.mix,
        quick=args.quick,
        profile_dir=Path(args.profile).resolve() if args.profile else None,
    )
    if settings.saturation_count > MAX_COUNT * settings.senders:
        parser.error(
            f"invalid --saturation-count {settings.saturation_count}: expected at most "
            f"{MAX_COUNT} per sender"
        )
    if settings.senders > settings.saturation_count:
        parser.error(f"invalid --senders {settings.senders}: more senders than saturation events")
    latency_count = round(settings.latency_rate * settings.latency_duration)
    if not 1 <= latency_count <= MAX_COUNT:
        parser.error(
            f"invalid --latency-rate and --latency-duration: they give {latency_count} events, "
            f"expected 1 to {MAX_COUNT}"
        )
    outage_count = round(settings.outage_rate * settings.outage_duration)
    if not 1 <= outage_count <= MAX_COUNT:
        parser.error(
            f"invalid --outage-rate and --outage-duration: they give {outage_count} events, "
            f"expected 1 to {MAX_COUNT}"
        )
    if settings.checkpoints[1] > MAX_COUNT * settings.senders:
        parser.error(f"invalid --checkpoints: expected at most {MAX_COUNT * settings.senders}")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.listener:
        if not args.config_dir:
            parser.error("--listener needs --config-dir")
        return listener_main(args.config_dir)
    settings = settings_from_args(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    shown_args = list(sys.argv[1:] if argv is None else argv)
    command = " ".join([".venv/bin/python -m tests.bench.bench_engine", *shown_args])
    return bench_main(settings, args, command)


if __name__ == "__main__":
    sys.exit(main())
