"""Compare two ways of reading a salt-master's event bus and handing frames to nats-py.

Run from the repository root (the defaults took 4 min 14 s on a 2-core machine)::

    .venv/bin/python -m tests.bench.bench_bus_reader

The script starts a nats-server and a salt-master (no minion, no engine) on free
127.0.0.1 ports in a temporary folder. For each reader variant it starts a child
process that reads the master bus and publishes every frame unchanged to the NATS
subject ``bench.bus``, so only the reading and the hand-off to nats-py differ:

thread
    A thread calls Salt's blocking ``SaltEvent.get_event(full=True, wait=1,
    auto_reconnect=True)`` and packs the event back into a bus frame with
    ``SaltEvent.pack``. It hands the frame to the asyncio loop with
    ``loop.call_soon_threadsafe`` into a bounded ``asyncio.Queue``, and a task on
    the loop publishes it. This is a reader built on Salt's public event API.
thread-raw
    The same thread, but it takes the raw frame from ``recv(timeout=1)`` of the
    ``SaltEvent``'s own subscriber, so the decode in ``get_event`` and the re-pack
    are skipped. It is not in the default ``--variants``.
async
    One asyncio loop: ``salt.transport.ipc_publish_client("master", opts,
    io_loop=loop)``, ``await recv()``, ``await nc.publish()``, as
    ``salt_nats.bus`` reads the bus.

Each run of a variant has three phases, each fired by ``tests/bench/fire_events.py``
in separate processes through Salt's own ``fire_event``:

warm-up
    100 events, to check that the path works end to end.
steady
    one sender at ``--rate`` events/s for ``--duration`` seconds.
burst
    ``--burst-senders`` senders fire ``--burst-count`` events in total, as fast as
    they can.

A NATS subscriber on a thread of this process records the receipt time of every
frame. From that, each phase reports events delivered, events lost (fired minus
delivered), latency from the sender's ``fire_time`` to receipt, and the reader
process's CPU time (user + system, from ``getrusage`` in the child) per frame it
read. The master log is searched for slow-subscriber warnings, and nats-server's
``/varz`` for slow consumers. Every variant runs ``--runs`` times, in alternating
order, and the table shows the median and the range.

NOTE: one process calling ``fire_event`` reached about 900 events/s on a 2-core
machine with salt 3008.4, because Salt's synchronous client starts a thread per
event there. So the burst phase measures the readers with all CPUs busy, not at
the limit of the reader itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.common import (
    READY_TIMEOUT,
    TAG_ROOT,
    BenchMaster,
    JsonLineChild,
    describe_machine,
    fire,
    format_summary,
    machine_busy_seconds,
    own_cpu_seconds,
    percentile,
    positive_float,
    positive_int,
    reply,
    wait_for_counts,
)

log = logging.getLogger("bench_bus_reader")

SUBJECT = "bench.bus"
VARIANTS = ("thread", "thread-raw", "async")
DEFAULT_VARIANTS = ("thread", "async")

# Max frames waiting between the reader thread and the publishing task. The thread
# variants drop and count frames beyond this.
HANDOFF_QUEUE_SIZE = 10_000

WARMUP_COUNT = 100
WARMUP_RATE = 200.0


# ---------------------------------------------------------------------------------
# Reader child process
# ---------------------------------------------------------------------------------


@dataclass
class ReaderCounters:
    """Counters of a reader child. ``read`` counts the frames taken from the bus."""

    read: int = 0
    published: int = 0
    publish_errors: int = 0
    queue_drops: int = 0
    bus_disconnects: int = 0

    def snapshot(self) -> dict[str, Any]:
        """Return the counts plus this process's CPU time (user + system) in seconds."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {**asdict(self), "cpu": usage.ru_utime + usage.ru_stime}


async def _publish_frame(nc: Any, frame: bytes, counters: ReaderCounters) -> None:
    from nats import errors as nats_errors

    try:
        await nc.publish(SUBJECT, frame)
    except (nats_errors.Error, OSError) as exc:
        counters.publish_errors += 1
        if counters.publish_errors <= 10:
            log.warning("publish failed: %r", exc)
    else:
        counters.published += 1


class ThreadReader:
    """Read the bus with Salt's blocking API on a thread, and publish from the loop."""

    def __init__(self, opts: dict[str, Any], nc: Any, counters: ReaderCounters, raw: bool):
        self.opts = opts
        self.nc = nc
        self.counters = counters
        self.raw = raw
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=HANDOFF_QUEUE_SIZE)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._publisher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._publisher = asyncio.create_task(self._publish_loop())
        self._thread = threading.Thread(target=self._read_bus, name="bus-reader", daemon=True)
        self._thread.start()

        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready.is_set() and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the bus reader thread did not connect in {READY_TIMEOUT} s")
            await asyncio.sleep(0.02)
        if self._error is not None or not self._ready.is_set():
            raise RuntimeError(f"the bus reader thread failed: {self._error!r}")

    def _read_bus(self) -> None:
        import salt.utils.event

        # Create the SaltEvent on this thread, which runs no loop, because from a
        # thread with a running loop SyncWrapper runs every call on a new thread.
        try:
            event = salt.utils.event.get_master_event(self.opts, self.opts["sock_dir"], listen=True)
        except Exception as exc:  # reported to start() on the loop thread
            self._error = exc
            return
        try:
            if not event.cpub:
                self._error = RuntimeError(
                    f"failed to connect to the master event publisher in {self.opts['sock_dir']}"
                )
                return
            self._ready.set()
            pack = salt.utils.event.SaltEvent.pack
            while not self._stop.is_set():
                if self.raw:
                    frame = event.subscriber.recv(timeout=1)
                else:
                    ret = event.get_event(full=True, no_block=False, wait=1, auto_reconnect=True)
                    frame = None if ret is None else pack(ret["tag"], ret["data"])
                if not frame:
                    continue
                self.counters.read += 1
                self._loop.call_soon_threadsafe(self._enqueue, bytes(frame))
        except Exception as exc:
            self._error = exc
            log.exception("bus reader thread failed")
        finally:
            event.destroy()

    def _enqueue(self, frame: bytes) -> None:
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.counters.queue_drops += 1

    async def _publish_loop(self) -> None:
        while True:
            frame = await self._queue.get()
            await _publish_frame(self.nc, frame, self.counters)

    async def stop(self) -> None:
        self._stop.set()
        # The thread checks the stop flag at least once per get_event wait (1 s).
        deadline = time.monotonic() + 5
        while self._thread is not None and self._thread.is_alive():
            if time.monotonic() > deadline:
                log.warning("the bus reader thread did not stop within 5 s")
                break
            await asyncio.sleep(0.05)
        while not self._queue.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)


class AsyncReader:
    """Read the bus with ``await recv()`` on the loop that runs nats-py."""

    def __init__(self, opts: dict[str, Any], nc: Any, counters: ReaderCounters):
        self.opts = opts
        self.nc = nc
        self.counters = counters
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import salt.transport

        loop = asyncio.get_running_loop()
        self._client = salt.transport.ipc_publish_client("master", self.opts, io_loop=loop)
        await asyncio.wait_for(
            self._client.connect(disconnect_callback=self._on_disconnect), READY_TIMEOUT
        )
        self._task = asyncio.create_task(self._read_bus())

    async def _on_disconnect(self) -> None:
        self.counters.bus_disconnects += 1
        log.warning("the master event publisher closed the connection; reconnecting")

    async def _read_bus(self) -> None:
        while True:
            frame = await self._client.recv()
            if not frame:
                continue
            self.counters.read += 1
            await _publish_frame(self.nc, bytes(frame), self.counters)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            self._client.close()


async def _read_commands(commands: asyncio.Queue[str]) -> None:
    """Put each line from stdin into ``commands``, and ``stop`` at the end of input."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    pending = b""
    done = asyncio.Event()

    def on_readable() -> None:
        nonlocal pending
        chunk = os.read(fd, 4096)
        if not chunk:
            loop.remove_reader(fd)
            commands.put_nowait("stop")
            done.set()
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            commands.put_nowait(line.decode().strip())

    loop.add_reader(fd, on_readable)
    await done.wait()


async def serve_reader(variant: str, config_dir: str, nats_url: str) -> None:
    """Run one reader variant, and reply to ``stats`` and ``stop`` on stdin with JSON lines."""
    import nats
    import salt.config

    opts = salt.config.master_config(os.path.join(config_dir, "master"))
    counters = ReaderCounters()

    async def on_nats_error(exc: Exception) -> None:
        log.warning("NATS client error: %r", exc)

    nc = await nats.connect(
        nats_url, name=f"bench-reader-{variant}", error_cb=on_nats_error, connect_timeout=10
    )
    if variant == "async":
        reader: ThreadReader | AsyncReader = AsyncReader(opts, nc, counters)
    else:
        reader = ThreadReader(opts, nc, counters, raw=variant == "thread-raw")
    await reader.start()
    reply({"ready": True, "pid": os.getpid()})

    commands: asyncio.Queue[str] = asyncio.Queue()
    stdin_task = asyncio.create_task(_read_commands(commands))
    while True:
        command = await commands.get()
        if command == "stats":
            reply(counters.snapshot())
        elif command == "stop":
            break
        elif command:
            reply({"error": f"unknown command {command!r}; expected stats or stop"})

    await reader.stop()
    try:
        await nc.flush(timeout=10)
    except Exception as exc:  # the counts below still matter
        log.warning("final NATS flush failed: %r", exc)
    await nc.close()
    stdin_task.cancel()
    reply(counters.snapshot())


def reader_main(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    asyncio.run(serve_reader(args.reader, args.config_dir, args.nats_url))
    return 0


# ---------------------------------------------------------------------------------
# Processes the benchmark starts: salt-master and reader children
# ---------------------------------------------------------------------------------


class ReaderProcess(JsonLineChild):
    """A reader child (this script with ``--reader``), driven over its stdin and stdout."""

    def __init__(self, variant: str, config_dir: Path, nats_url: str, log_path: Path) -> None:
        self.variant = variant
        command = [
            sys.executable,
            "-m",
            "tests.bench.bench_bus_reader",
            "--reader",
            variant,
            "--config-dir",
            str(config_dir),
            "--nats-url",
            nats_url,
        ]
        super().__init__(f"reader {variant}", command, log_path)


# ---------------------------------------------------------------------------------
# NATS subscriber that times every frame
# ---------------------------------------------------------------------------------


@dataclass
class Receipt:
    """One frame as the subscriber saw it: sender, event number and two wall-clock times."""

    sender: str
    seq: int
    fire_time: float
    receive_time: float


class TimingSubscriber:
    """Subscribe to ``SUBJECT`` on a thread of its own and record a Receipt per bench frame.

    A frame's tag is ``bench/<phase id>/<sender>/...``, and receipts are grouped by
    the phase id. Frames with other tags (the master's own events) are only counted.
    """

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self.receipts: dict[str, list[Receipt]] = defaultdict(list)
        self.other_frames = 0
        self.slow_consumer_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="nats-subscriber", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT) or self._error is not None:
            raise RuntimeError(f"the NATS subscriber failed to start: {self._error!r}")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        import msgpack
        import nats
        from nats import errors as nats_errors

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        prefix = TAG_ROOT.encode()

        async def on_error(exc: Exception) -> None:
            if isinstance(exc, nats_errors.SlowConsumerError):
                self.slow_consumer_errors += 1
            else:
                log.warning("subscriber NATS error: %r", exc)

        async def on_message(msg: Any) -> None:
            received = time.time()
            tag, _, body = msg.data.partition(b"\n\n")
            parts = tag.split(b"/", 3)
            if len(parts) < 4 or parts[0] != prefix:
                self.other_frames += 1
                return
            data = msgpack.unpackb(body, raw=False, strict_map_key=False)
            self.receipts[parts[1].decode()].append(
                Receipt(parts[2].decode(), data["seq"], data["fire_time"], received)
            )

        nc = await nats.connect(self.nats_url, name="bench-subscriber", error_cb=on_error)
        # Limits far above a phase's volume, so the subscriber never drops on its side.
        await nc.subscribe(
            SUBJECT, cb=on_message, pending_msgs_limit=1_000_000, pending_bytes_limit=2**30
        )
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.drain()

    def count(self, phase_id: str) -> int:
        return len(self.receipts.get(phase_id, ()))

    def take(self, phase_id: str) -> list[Receipt]:
        return self.receipts.pop(phase_id, [])

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


# ---------------------------------------------------------------------------------
# Phases and runs
# ---------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    """Figures of one phase of one run, with times in seconds unless the name gives a unit."""

    fired: int
    delivered: int
    duplicates: int
    reader_read: int
    reader_cpu: float
    fire_rate: float
    latencies_ms: list[float] = field(repr=False)
    first_fire: float
    last_receipt: float
    queue_drops: int
    publish_errors: int

    @property
    def lost(self) -> int:
        return self.fired - self.delivered

    @property
    def cpu_us_per_event(self) -> float:
        return 1e6 * self.reader_cpu / self.reader_read if self.reader_read else math.nan

    @property
    def throughput(self) -> float:
        span = self.last_receipt - self.first_fire
        return self.delivered / span if self.delivered and span > 0 else math.nan

    def latency_ms(self, percent: float) -> float:
        return percentile(self.latencies_ms, percent)


@dataclass
class RunResult:
    """One run of one variant."""

    variant: str
    round: int
    steady: PhaseResult
    burst: PhaseResult
    slow_subscriber_lines: list[str]
    nats_slow_consumers: int
    subscriber_slow_consumer_errors: int
    bus_disconnects: int
    seconds: float
    other_cpu_cores: float


def wait_for_delivery(subscriber: TimingSubscriber, phase_id: str, expected: int) -> None:
    """Wait until ``expected`` frames of the phase arrived, or none for QUIET_PERIOD seconds."""
    wait_for_counts({"subscriber": lambda: subscriber.count(phase_id)}, expected)


def run_phase(
    reader: ReaderProcess,
    subscriber: TimingSubscriber,
    config_dir: Path,
    phase_id: str,
    counts: Sequence[int],
    rate: float,
    mix: str,
    timeout: float,
) -> PhaseResult:
    before = reader.request("stats")
    totals = fire(config_dir, phase_id, counts, rate, mix, timeout)
    fired = sum(total["fired"] for total in totals)
    wait_for_delivery(subscriber, phase_id, fired)
    after = reader.request("stats")

    receipts = subscriber.take(phase_id)
    unique = {(receipt.sender, receipt.seq) for receipt in receipts}
    return PhaseResult(
        fired=fired,
        delivered=len(unique),
        duplicates=len(receipts) - len(unique),
        reader_read=after["read"] - before["read"],
        reader_cpu=after["cpu"] - before["cpu"],
        fire_rate=fired / max(total["elapsed"] for total in totals),
        latencies_ms=[1000 * (r.receive_time - r.fire_time) for r in receipts],
        first_fire=min((r.fire_time for r in receipts), default=math.nan),
        last_receipt=max((r.receive_time for r in receipts), default=math.nan),
        queue_drops=after["queue_drops"] - before["queue_drops"],
        publish_errors=after["publish_errors"] - before["publish_errors"],
    )


@dataclass
class BenchSettings:
    """What one benchmark run fires; see the command-line help."""

    runs: int
    variants: list[str]
    rate: float
    duration: float
    burst_count: int
    burst_senders: int
    mix: str


def run_variant(
    settings: BenchSettings,
    variant: str,
    round_number: int,
    master: BenchMaster,
    nats_server: Any,
    subscriber: TimingSubscriber,
) -> RunResult:
    started = time.monotonic()
    busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
    run_id = f"r{round_number}-{variant}"
    log_offset = master.log_size()
    slow_consumers_before = nats_server.varz()["slow_consumers"]
    subscriber_errors_before = subscriber.slow_consumer_errors

    reader = ReaderProcess(
        variant, master.conf_dir, nats_server.url, master.root / f"reader-{run_id}.log"
    )
    try:
        reader.start()

        warmup = run_phase(
            reader,
            subscriber,
            master.conf_dir,
            f"{run_id}-warmup",
            [WARMUP_COUNT],
            WARMUP_RATE,
            settings.mix,
            timeout=60,
        )
        if warmup.delivered == 0:
            raise RuntimeError(
                f"no warm-up event reached NATS through reader {variant}; "
                f"see {reader.log_path} and {master.log_file}"
            )

        steady_count = round(settings.rate * settings.duration)
        steady = run_phase(
            reader,
            subscriber,
            master.conf_dir,
            f"{run_id}-steady",
            [steady_count],
            settings.rate,
            settings.mix,
            timeout=settings.duration + 60,
        )

        share, extra = divmod(settings.burst_count, settings.burst_senders)
        counts = [share + (1 if index < extra else 0) for index in range(settings.burst_senders)]
        burst = run_phase(
            reader,
            subscriber,
            master.conf_dir,
            f"{run_id}-burst",
            [count for count in counts if count],
            0.0,
            settings.mix,
            timeout=300,
        )
    finally:
        final = reader.stop()

    seconds = time.monotonic() - started
    other_cpu = (machine_busy_seconds() - busy_before) - (own_cpu_seconds() - own_before)
    return RunResult(
        variant=variant,
        round=round_number,
        steady=steady,
        burst=burst,
        slow_subscriber_lines=master.slow_subscriber_lines(log_offset),
        nats_slow_consumers=nats_server.varz()["slow_consumers"] - slow_consumers_before,
        subscriber_slow_consumer_errors=subscriber.slow_consumer_errors - subscriber_errors_before,
        bus_disconnects=(final or {}).get("bus_disconnects", 0),
        seconds=seconds,
        other_cpu_cores=max(other_cpu, 0.0) / seconds,
    )


# ---------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------


# Table rows: label, value of one run, decimal places.
ROWS: list[tuple[str, Callable[[RunResult], float], int]] = [
    ("steady: events fired", lambda r: r.steady.fired, 0),
    ("steady: delivered to NATS", lambda r: r.steady.delivered, 0),
    ("steady: lost", lambda r: r.steady.lost, 0),
    ("steady: latency p50 (ms)", lambda r: r.steady.latency_ms(50), 2),
    ("steady: latency p99 (ms)", lambda r: r.steady.latency_ms(99), 2),
    ("steady: reader CPU per event (µs)", lambda r: r.steady.cpu_us_per_event, 0),
    ("burst: events fired", lambda r: r.burst.fired, 0),
    ("burst: fire rate of all senders (events/s)", lambda r: r.burst.fire_rate, 0),
    ("burst: delivered to NATS", lambda r: r.burst.delivered, 0),
    ("burst: lost", lambda r: r.burst.lost, 0),
    ("burst: throughput to NATS (events/s)", lambda r: r.burst.throughput, 0),
    ("burst: latency p50 (ms)", lambda r: r.burst.latency_ms(50), 1),
    ("burst: latency p99 (ms)", lambda r: r.burst.latency_ms(99), 1),
    ("burst: reader CPU per event (µs)", lambda r: r.burst.cpu_us_per_event, 0),
    ("master slow-subscriber warnings", lambda r: len(r.slow_subscriber_lines), 0),
    ("NATS slow consumers", lambda r: r.nats_slow_consumers, 0),
    ("other processes on the machine (CPU cores busy)", lambda r: r.other_cpu_cores, 2),
]


def format_table(results: Sequence[RunResult], variants: Sequence[str]) -> str:
    """Return a Markdown table: one row per figure, one column per variant."""
    by_variant = {variant: [r for r in results if r.variant == variant] for variant in variants}
    runs = min(len(runs) for runs in by_variant.values())
    header = f"| median (min to max) of {runs} runs | " + " | ".join(variants) + " |"
    lines = [header, "|---|" + "---:|" * len(variants)]
    for label, value_of, digits in ROWS:
        cells = [format_summary([value_of(r) for r in by_variant[v]], digits) for v in variants]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_report(settings: BenchSettings, results: Sequence[RunResult], elapsed: float) -> None:
    from tests.bench.fire_events import packed_sizes

    sizes = ", ".join(f"{kind} {size:,} B" for kind, size in packed_sizes().items())
    print()
    print(f"Machine: {describe_machine()}")
    print(
        f"Steady: 1 sender at {settings.rate:g} events/s for {settings.duration:g} s. "
        f"Burst: {settings.burst_count:,} events from {settings.burst_senders} senders "
        f"as fast as possible. Mix: {settings.mix} ({sizes})."
    )
    print()
    print(format_table(results, settings.variants))
    print()
    for result in results:
        notes = []
        for name, phase in (("steady", result.steady), ("burst", result.burst)):
            if phase.duplicates:
                notes.append(f"{name}: {phase.duplicates} duplicates")
            if phase.queue_drops:
                notes.append(f"{name}: {phase.queue_drops} hand-off queue drops")
            if phase.publish_errors:
                notes.append(f"{name}: {phase.publish_errors} publish errors")
        if result.bus_disconnects:
            notes.append(f"{result.bus_disconnects} bus disconnects")
        if result.subscriber_slow_consumer_errors:
            notes.append(
                f"{result.subscriber_slow_consumer_errors} subscriber slow-consumer errors"
            )
        notes.extend(f"master: {line}" for line in result.slow_subscriber_lines[:3])
        print(
            f"run {result.round} {result.variant}: {result.seconds:.0f} s"
            + ("; " + "; ".join(notes) if notes else "")
        )
    print(f"Total time: {elapsed:.0f} s")


def _result_to_json(result: RunResult) -> dict[str, Any]:
    data = asdict(result)
    for name in ("steady", "burst"):
        phase: PhaseResult = getattr(result, name)
        data[name].pop("latencies_ms")
        data[name].update(
            lost=phase.lost,
            latency_p50_ms=phase.latency_ms(50),
            latency_p99_ms=phase.latency_ms(99),
            cpu_us_per_event=phase.cpu_us_per_event,
            throughput=phase.throughput,
        )
    return data


def bench_main(args: argparse.Namespace) -> int:
    from tests.support.nats_server import NatsServer

    settings = BenchSettings(
        runs=args.runs,
        variants=args.variants,
        rate=args.rate,
        duration=args.duration,
        burst_count=args.burst_count,
        burst_senders=args.burst_senders,
        mix=args.mix,
    )
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="salt-nats-bench-"))
    nats_server = NatsServer(root / "nats", name="bench-nats")
    master = BenchMaster(root)
    subscriber: TimingSubscriber | None = None
    results: list[RunResult] = []
    try:
        nats_server.start()
        master.start()
        master.wait_until_ready()
        subscriber = TimingSubscriber(nats_server.url)
        subscriber.start()
        print(
            f"nats-server on {nats_server.url}, salt-master (pid {master.process.pid}) in {root}",
            flush=True,
        )

        for round_number in range(1, settings.runs + 1):
            # Alternate the order, so neither variant always runs first.
            order = settings.variants if round_number % 2 else settings.variants[::-1]
            for variant in order:
                result = run_variant(
                    settings, variant, round_number, master, nats_server, subscriber
                )
                results.append(result)
                print(
                    f"run {round_number} {variant}: steady {result.steady.delivered}/"
                    f"{result.steady.fired}, p99 {result.steady.latency_ms(99):.1f} ms, "
                    f"{result.steady.cpu_us_per_event:.0f} µs/event; burst "
                    f"{result.burst.delivered}/{result.burst.fired}, "
                    f"{result.burst.cpu_us_per_event:.0f} µs/event ({result.seconds:.0f} s)",
                    flush=True,
                )

        print_report(settings, results, time.monotonic() - started)
        if args.json:
            Path(args.json).write_text(
                json.dumps([_result_to_json(r) for r in results], indent=2) + "\n"
            )
    finally:
        if subscriber is not None:
            subscriber.stop()
        master.stop()
        nats_server.stop()
        if args.keep:
            print(f"Kept configs and logs in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


# ---------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------


def _variant_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"invalid variants {text!r}: expected a comma-separated list of {', '.join(VARIANTS)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    from tests.bench.fire_events import MAX_COUNT, MIXES

    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_bus_reader",
        description="Compare a thread reader and an asyncio reader of the salt-master "
        "event bus that publish every frame to NATS.",
    )
    parser.add_argument(
        "--runs", type=positive_int, default=3, help="runs of each variant (default: 3)"
    )
    parser.add_argument(
        "--variants",
        type=_variant_list,
        default=list(DEFAULT_VARIANTS),
        help=f"comma-separated variants out of {', '.join(VARIANTS)} "
        f"(default: {','.join(DEFAULT_VARIANTS)})",
    )
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=500.0,
        help="events/s in the steady phase (default: 500)",
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=20.0,
        help="seconds of the steady phase (default: 20)",
    )
    parser.add_argument(
        "--burst-count",
        type=positive_int,
        default=20_000,
        help=f"events in the burst phase, all senders together, at most "
        f"{MAX_COUNT:,} (default: 20000)",
    )
    parser.add_argument(
        "--burst-senders",
        type=positive_int,
        default=2,
        help="fire_events processes in the burst phase (default: 2)",
    )
    parser.add_argument(
        "--mix",
        choices=MIXES,
        default="real",
        help="event sizes, as in fire_events.py (default: real)",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the figures of every run to this JSON file"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder with configs and logs"
    )
    # The reader child: this script started by bench_main with --reader VARIANT.
    parser.add_argument("--reader", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--config-dir", help=argparse.SUPPRESS)
    parser.add_argument("--nats-url", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.reader:
        return reader_main(args)
    from tests.bench.fire_events import MAX_COUNT

    if args.burst_count > MAX_COUNT:
        parser.error(f"invalid --burst-count {args.burst_count}: expected at most {MAX_COUNT}")
    if args.burst_senders > args.burst_count:
        parser.error(
            f"invalid --burst-senders {args.burst_senders}: more senders than burst events"
        )
    steady_count = round(args.rate * args.duration)
    if not 1 <= steady_count <= MAX_COUNT:
        parser.error(
            f"invalid --rate and --duration: they give {steady_count} steady events, "
            f"expected 1 to {MAX_COUNT}"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return bench_main(args)


if __name__ == "__main__":
    sys.exit(main())
