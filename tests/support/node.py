"""Run the Node.js and browser examples from the tests.

The helpers find ``node`` and ``npm``, run ``npm ci`` in an example folder whose
``node_modules`` is missing or older than its ``package-lock.json``, and make sure
Debian's Chromium is installed, through ``scripts/install-browser-deps.sh``.
``make test`` prepares all of this up front with ``make js-deps``. When a tool cannot
be installed, the test that needs it is skipped and the reason names the fix.

``NodeProcess`` starts a long-running Node.js program and collects its stdout and
stderr lines in background threads, so a test can wait for a line.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
NODE_EXAMPLE = ROOT / "examples" / "node"
BROWSER_EXAMPLE = ROOT / "examples" / "browser"
INSTALL_BROWSER_SCRIPT = ROOT / "scripts" / "install-browser-deps.sh"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))

# The examples use ES modules, node:test and util.parseArgs, all stable in Node.js 20.
MIN_NODE_MAJOR = 20
NPM_CI_TIMEOUT = 600
BROWSER_INSTALL_TIMEOUT = 900
STOP_TIMEOUT = 10.0


def require_node() -> str:
    """Return the path of ``node``, or skip the test when it is missing or too old."""
    node = shutil.which("node")
    if node is None:
        pytest.skip(f"node not found on PATH; install Node.js {MIN_NODE_MAJOR} or newer")

    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < MIN_NODE_MAJOR:
        pytest.skip(f"node {version} is too old; the examples need Node.js {MIN_NODE_MAJOR}+")
    return node


def ensure_node_modules(folder: Path) -> None:
    """Run ``npm ci`` in ``folder`` unless its node_modules matches package-lock.json.

    npm writes ``node_modules/.package-lock.json`` on every install, so a lock file
    newer than that means the installed packages are stale. Skips the test when npm is
    missing or ``npm ci`` fails, for example because the registry is unreachable.
    """
    lock_file = folder / "package-lock.json"
    installed = folder / "node_modules" / ".package-lock.json"
    if installed.is_file() and installed.stat().st_mtime >= lock_file.stat().st_mtime:
        return

    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm not found on PATH; install npm and run `npm ci` in {folder}")

    log.info("Running npm ci in %s", folder)
    started = time.monotonic()
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=NPM_CI_TIMEOUT,
    )
    if result.returncode != 0:
        pytest.skip(
            f"`npm ci` failed in {folder} with exit code {result.returncode}: "
            f"{(result.stderr or result.stdout)[-1500:]}"
        )
    log.info("npm ci in %s took %.1f s", folder, time.monotonic() - started)


def ensure_chromium() -> Path:
    """Return the Chromium binary, installing Debian's package first if it is missing.

    Skips the test when ``scripts/install-browser-deps.sh`` cannot install it, for
    example without root rights.
    """
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM

    log.info("%s not found; running %s", CHROMIUM, INSTALL_BROWSER_SCRIPT)
    result = subprocess.run(
        [str(INSTALL_BROWSER_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=BROWSER_INSTALL_TIMEOUT,
    )
    if result.returncode != 0 or not CHROMIUM.is_file():
        pytest.skip(
            f"Chromium is not installed at {CHROMIUM} and {INSTALL_BROWSER_SCRIPT.name} "
            f"failed with exit code {result.returncode}: {result.stderr[-1500:]}"
        )
    return CHROMIUM


class NodeProcess:
    """A Node.js program whose output lines are collected while it runs.

    Use it as a context manager: leaving the block stops the process with SIGTERM,
    and with SIGKILL if it outlives ``STOP_TIMEOUT`` seconds.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> None:
        self.command = list(command)
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._condition = threading.Condition()

        log.info("Starting %s in %s", self.command, cwd)
        self.process = subprocess.Popen(
            self.command,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout_lines)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr_lines)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _read(self, stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._condition:
                lines.append(line.rstrip("\n"))
                self._condition.notify_all()
        with self._condition:
            self._condition.notify_all()

    def output(self) -> str:
        """Return everything the process wrote so far, stderr after stdout."""
        with self._condition:
            stdout = "\n".join(self.stdout_lines)
            stderr = "\n".join(self.stderr_lines)
        return f"--- stdout of {self.command}\n{stdout}\n--- stderr\n{stderr}"

    def wait_for_line(
        self,
        predicate: Callable[[str], bool],
        *,
        stream: str = "stdout",
        since: int = 0,
        timeout: float = 30.0,
    ) -> str:
        """Wait until a line of ``stream`` ("stdout" or "stderr") matches, and return it.

        Only lines from index ``since`` on are checked. Raises TimeoutError with the
        process output when no line matches within ``timeout`` seconds, or when the
        process exits first.
        """
        lines = self.stdout_lines if stream == "stdout" else self.stderr_lines
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for line in lines[since:]:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    break
                self._condition.wait(min(remaining, 0.5))

        state = (
            f"exited with code {self.process.returncode}"
            if self.process.poll() is not None
            else f"no matching line within {timeout} s"
        )
        raise TimeoutError(f"{self.command[:3]}: {state}\n{self.output()}")

    def send_line(self, line: str) -> None:
        """Write one line to the process's stdin (start it with ``stdin=True``)."""
        assert self.process.stdin is not None, "the process was started without stdin"
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit and its output to be read, and return the exit code."""
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def stop(self) -> int | None:
        """Stop the process with SIGTERM (SIGKILL after a timeout) and return its exit code."""
        if self.process.poll() is None:
            log.info("Stopping %s (pid %s)", self.command[:3], self.process.pid)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM; sending SIGKILL", self.command[:3])
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        for reader in self._readers:
            reader.join(timeout=5)
        return self.process.returncode
