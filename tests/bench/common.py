"""Helpers that the benchmark scripts in ``tests/bench`` share.

They start a salt-master on free 127.0.0.1 ports and drive child processes over a
JSON line protocol. They fire events with ``tests/bench/fire_events.py`` from
separate processes and wait for delivery. They also measure the CPU time that the
rest of the machine used meanwhile, and format the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import resource
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]

# Every benchmark event has the tag ``bench/<phase id>/<sender>/<kind>``.
TAG_ROOT = "bench"

# A phase ends when every fired event has arrived, or when none arrived for
# QUIET_PERIOD seconds after the senders finished, or after MAX_DRAIN_TIME seconds.
QUIET_PERIOD = 2.0
MAX_DRAIN_TIME = 60.0

READY_TIMEOUT = 30.0
COMMAND_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0

# Master log lines that mean the publisher dropped a slow subscriber (salt 3008).
SLOW_SUBSCRIBER_PATTERN = re.compile(
    r"discarding slow subscriber|pub_server_write_queue_size|drain queue full", re.IGNORECASE
)


# ---------------------------------------------------------------------------------
# salt-master and child processes
# ---------------------------------------------------------------------------------


def venv_script(name: str) -> str:
    """Return the path of a console script next to the running Python, else its bare name."""
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else name


class BenchMaster:
    """A salt-master in ``root``, listening on 127.0.0.1 only.

    ``engines`` is the master's ``engines:`` list. Without it the master runs no
    engine.
    """

    def __init__(self, root: Path, engines: Sequence[Mapping[str, Any]] = ()) -> None:
        from salt_nats.demo import free_port

        self.root = root
        self.engines = [dict(engine) for engine in engines]
        self.conf_dir = root / "conf"
        self.sock_dir = root / "sock"
        self.cache_dir = root / "cache"
        self.log_file = root / "master.log"
        self.publish_port = free_port()
        self.ret_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "id": "bench-master",
            "root_dir": str(self.root),
            "user": getpass.getuser(),
            "interface": "127.0.0.1",
            "publish_port": self.publish_port,
            "ret_port": self.ret_port,
            "sock_dir": str(self.sock_dir),
            "pki_dir": str(self.root / "pki"),
            "cachedir": str(self.cache_dir),
            "log_file": str(self.log_file),
            "log_level_logfile": "info",
        }
        if self.engines:
            config["engines"] = self.engines
        # JSON is valid YAML.
        (self.conf_dir / "master").write_text(json.dumps(config, indent=2) + "\n")

    def start(self) -> None:
        self.write_config()
        with (self.root / "master.out").open("ab") as output:
            # A session of its own gives the master and its worker processes one
            # process group, which stop() signals by the master's PID.
            self.process = subprocess.Popen(
                [venv_script("salt-master"), "-c", str(self.conf_dir)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        """Wait until the master's event sockets exist."""
        sockets = [self.sock_dir / "master_event_pub.ipc", self.sock_dir / "master_event_pull.ipc"]
        deadline = time.monotonic() + timeout
        while not all(path.exists() for path in sockets):
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"salt-master exited with status {self.process.returncode}; "
                    f"see {self.root / 'master.out'} and {self.log_file}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"salt-master made no event sockets in {self.sock_dir} "
                    f"within {timeout:.0f} s; see {self.log_file}"
                )
            time.sleep(0.1)

    def log_size(self) -> int:
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def read_log(self, offset: int = 0) -> str:
        """Return the master log from byte ``offset`` on, or an empty string if it is missing."""
        if not self.log_file.exists():
            return ""
        with self.log_file.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")

    def slow_subscriber_lines(self, offset: int) -> list[str]:
        """Return the master log lines after byte ``offset`` that report a dropped subscriber."""
        text = self.read_log(offset)
        return [line for line in text.splitlines() if SLOW_SUBSCRIBER_PATTERN.search(line)]

    def stop(self) -> None:
        """Stop the master's process group: SIGTERM, then SIGKILL after 15 s."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("salt-master (pid %d) ignored SIGTERM; sending SIGKILL", process.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


class JsonLineChild:
    """A child process driven over stdin and stdout, one JSON object per line.

    The child replies to every command line with one JSON line. Its first reply,
    sent unprompted, must contain ``"ready": true``. ``stop`` is the command that
    ends it, and its reply carries the final counts.
    """

    def __init__(self, name: str, command: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._pending = b""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> dict[str, Any]:
        """Start the child and return its ready reply."""
        with self.log_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        reply = self._read_reply(READY_TIMEOUT)
        if not reply.get("ready"):
            raise RuntimeError(f"{self.name} did not start: {reply}")
        return reply

    def _read_reply(self, timeout: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.name} sent no reply within {timeout:.0f} s; see {self.log_path}"
                )
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise RuntimeError(
                    f"{self.name} exited with status {self.process.wait()}; see {self.log_path}"
                )
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def request(self, command: str, timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()
        return self._read_reply(timeout)

    def stop(self) -> dict[str, Any] | None:
        """Ask the child to stop and return its final counts; kill it by PID if it hangs."""
        process = self.process
        if process is None:
            return None
        final = None
        if process.poll() is None:
            try:
                final = self.request("stop", timeout=STOP_TIMEOUT)
                process.wait(timeout=STOP_TIMEOUT)
            except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired) as exc:
                log.warning("%s (pid %d) did not stop cleanly: %s", self.name, process.pid, exc)
                process.kill()
                process.wait(timeout=5)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        return final


def reply(message: Mapping[str, Any]) -> None:
    """Write one JSON reply line to stdout, for the parent's :class:`JsonLineChild`."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------
# Firing events and waiting for them
# ---------------------------------------------------------------------------------


def fire_command(config_dir: Path, count: int, rate: float, tag_prefix: str, mix: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.bench.fire_events",
        "--config-dir",
        str(config_dir),
        "--count",
        str(count),
        "--rate",
        str(rate),
        "--tag-prefix",
        tag_prefix,
        "--mix",
        mix,
    ]


def fire(
    config_dir: Path,
    phase_id: str,
    counts: Sequence[int],
    rate: float,
    mix: str,
    timeout: float,
    allow_failed: bool = False,
) -> list[dict[str, Any]]:
    """Run one fire_events process per entry of ``counts`` at once, and return their totals.

    Sender ``i`` fires with the tag prefix ``bench/<phase_id>/s<i>`` at ``rate``
    events/s (0: as fast as it can). A sender that exits with an error raises
    RuntimeError. With ``allow_failed``, a sender whose only error was events that
    the bus did not take (exit status 1 with totals) is accepted, and its totals
    count them as ``failed``.
    """
    processes = []
    try:
        for index, count in enumerate(counts):
            tag_prefix = f"{TAG_ROOT}/{phase_id}/s{index}"
            processes.append(
                subprocess.Popen(
                    fire_command(config_dir, count, rate, tag_prefix, mix),
                    cwd=REPO_ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        totals = []
        deadline = time.monotonic() + timeout
        for process in processes:
            stdout, stderr = process.communicate(timeout=max(deadline - time.monotonic(), 1))
            lines = stdout.decode().strip().splitlines()
            if allow_failed and process.returncode == 1 and lines:
                totals.append(json.loads(lines[-1]))
                continue
            if process.returncode != 0:
                raise RuntimeError(
                    f"fire_events exited with status {process.returncode}: "
                    f"{stderr.decode(errors='replace')[-2000:]}"
                )
            totals.append(json.loads(lines[-1]))
        return totals
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)


def split_count(total: int, parts: int) -> list[int]:
    """Split ``total`` events into ``parts`` near-equal shares, leaving out empty ones."""
    share, extra = divmod(total, parts)
    counts = [share + (1 if index < extra else 0) for index in range(parts)]
    return [count for count in counts if count]


def wait_for_counts(
    counters: Mapping[str, Callable[[], int]],
    expected: int,
    quiet_period: float = QUIET_PERIOD,
    max_time: float = MAX_DRAIN_TIME,
) -> None:
    """Wait until every counter reaches ``expected``, or stalls, or ``max_time`` passes.

    A counter that has not changed for ``quiet_period`` seconds counts as stalled.
    """
    deadline = time.monotonic() + max_time
    last_counts = dict.fromkeys(counters, -1)
    last_change = dict.fromkeys(counters, time.monotonic())
    while time.monotonic() < deadline:
        now = time.monotonic()
        finished = True
        for name, count_of in counters.items():
            count = count_of()
            if count >= expected:
                continue
            if count != last_counts[name]:
                last_counts[name], last_change[name] = count, now
            if now - last_change[name] <= quiet_period:
                finished = False
        if finished:
            return
        time.sleep(0.05)


# ---------------------------------------------------------------------------------
# CPU of the machine and of this benchmark
# ---------------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    """Return the CPU seconds that all CPUs of the machine spent busy since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """Return the CPU seconds used by this process, its reaped children and live descendants.

    NOTE: a descendant that exited but was not reaped by this process (a
    short-lived helper of the salt-master, say) is missed and counts as another
    process's CPU time.
    """
    import psutil

    total = 0.0
    for target in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(target)
        total += usage.ru_utime + usage.ru_stime
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


class BackgroundLoad:
    """CPU cores that processes outside this benchmark kept busy since construction."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._busy = machine_busy_seconds()
        self._own = own_cpu_seconds()

    def cores(self) -> float:
        seconds = time.monotonic() - self._started
        if seconds <= 0:
            return math.nan
        other = (machine_busy_seconds() - self._busy) - (own_cpu_seconds() - self._own)
        return max(other, 0.0) / seconds


# ---------------------------------------------------------------------------------
# Figures and report
# ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], percent: float) -> float:
    """Return the nearest-rank percentile of ``values``, or NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def format_summary(values: Sequence[float], digits: int) -> str:
    """Return ``median (min to max)`` of the finite values, one value alone, or ``n/a``."""
    finite = [value for value in values if not math.isnan(value)]
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return f"{finite[0]:,.{digits}f}"
    low, mid, high = min(finite), statistics.median(finite), max(finite)
    return f"{mid:,.{digits}f} ({low:,.{digits}f} to {high:,.{digits}f})"


def describe_machine() -> str:
    import salt.version

    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    from salt_nats.demo import find_nats_server

    server_version = subprocess.run(
        [find_nats_server(), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, salt {salt.version.__version__}, "
        f"nats-py {importlib.metadata.version('nats-py')}, {server_version}"
    )


# ---------------------------------------------------------------------------------
# Command-line argument types
# ---------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value}: expected an integer >= 1")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid value {value}: expected a number > 0")
    return value
