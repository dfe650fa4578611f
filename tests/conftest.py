"""Shared fixtures: nats-server processes, and factories for a real salt-master and salt-minion.

NATS
    ``nats_server`` (per test) and ``nats_server_module`` (per module) are started
    ``NatsServer`` instances with JetStream on. ``make_nats_server(**options)`` starts
    servers with other options (``max_payload``, ``extra_config``, ...) and stops them
    after the test.

Salt
    ``make_master`` and ``make_minion`` are module-scoped factories built on
    pytest-salt-factories. A test module that needs the salt-nats engine builds its
    own master, so the engine config can point at that module's nats-server::

        @pytest.fixture(scope="module")
        def engine_master(make_master, nats_server_module):
            return make_master(engine_config={"servers": [nats_server_module.url]})

        @pytest.fixture(scope="module")
        def engine_minion(make_minion, engine_master):
            return make_minion(engine_master, "web01.example.com")

    The master's config then contains ``engines: [{"nats": {...}}, "pytest"]``. The
    second entry is salt-factories' own engine, which reports daemon start events to
    the test session. The ``nats`` engine is found through the ``salt.loader`` entry
    point of the installed salt-nats package, so the editable install in ``.venv``
    serves the working tree's ``salt_nats/engines``.

    Daemons started by a factory stop when the test module that requested it ends.
    ``tests/integration/conftest.py`` provides a ready-made pair without the engine.

Every server here, including salt-factories' event listener and log server, listens on
127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from saltfactories.daemons.master import SaltMaster
from saltfactories.daemons.minion import SaltMinion
from saltfactories.plugins.event_listener import EventListener

from tests.support.nats_server import LOOPBACK, NatsServer

log = logging.getLogger(__name__)

# Master settings that shorten start-up and keep the test master small. The master
# listens on 127.0.0.1 only, so open mode (accept every minion key) is safe here and
# saves a `salt-key --accept` subprocess per minion. Salt raises worker_threads below 3
# to 3, with a warning in the log, when `peer` is set, as salt-factories sets it.
FAST_MASTER_CONFIG: dict[str, Any] = {
    "open_mode": True,
    "worker_threads": 3,
    "timeout": 10,
    "gather_job_timeout": 5,
}

FAST_MINION_CONFIG: dict[str, Any] = {
    "loop_interval": 0.05,
    "acceptance_wait_time": 0.5,
    "acceptance_wait_time_max": 2,
    "auth_timeout": 5,
    "random_reauth_delay": 0,
}


# --- keep salt-factories' helper servers on loopback ---------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_sessionstart(session: pytest.Session) -> Iterator[None]:
    """Bind salt-factories' log server to 127.0.0.1 and remove Salt's deferred log handler.

    Importing salt adds a handler to the root logger that buffers every warning until
    the interpreter exits and then writes them to the ``sys.stderr`` it saw at import
    time. Under pytest that stream is closed by then, so each warning forwarded from
    the daemons ended as a "--- Logging error ---" traceback after the session.
    """
    import salt._logging.impl

    salt._logging.impl.shutdown_temp_handler()

    log_server = session.config.pluginmanager.get_plugin("saltfactories-log-server")
    if log_server is not None:
        log_server.log_host = LOOPBACK
    return (yield)


@pytest.fixture(scope="session")
def event_listener() -> Iterator[EventListener]:
    """Replace salt-factories' event listener with one bound to 127.0.0.1, not 0.0.0.0."""
    listener = EventListener()
    listener.host = LOOPBACK
    listener.address = f"tcp://{LOOPBACK}:{listener.port}"
    with listener:
        yield listener


# --- NATS ----------------------------------------------------------------------------


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server with JetStream, stopped after the test."""
    with NatsServer(tmp_path / "nats", jetstream=True) as server:
        yield server


@pytest.fixture(scope="module")
def nats_server_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server with JetStream, shared by the tests of one module."""
    with NatsServer(tmp_path_factory.mktemp("nats"), jetstream=True) as server:
        yield server


@pytest.fixture
def make_nats_server(tmp_path: Path) -> Iterator[Callable[..., NatsServer]]:
    """Return a function that starts a ``NatsServer`` with the given options.

    The options are ``NatsServer``'s keyword arguments. Every server it starts is
    stopped after the test.
    """
    servers: list[NatsServer] = []

    def _make(**options: Any) -> NatsServer:
        options.setdefault("name", f"nats-{len(servers) + 1}")
        server = NatsServer(tmp_path / options["name"], **options)
        servers.append(server)
        server.start()
        return server

    yield _make

    for server in servers:
        server.stop()


# --- salt-factories ------------------------------------------------------------------


@pytest.fixture(scope="session")
def salt_factories_default_root_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """Root directory of every Salt daemon's files: a short, new directory under the temp dir.

    Salt puts Unix sockets under ``<root>/<daemon id>/run``, and Linux limits a socket
    path to 107 bytes. The longest, a minion's
    ``<root>/<minion id>/run/minion/minion_event_<10 hex>_pull.ipc``, is 81 bytes for
    ``web01.example.com`` under ``/tmp/snats-XXXXXXXX``, which leaves room for minion
    ids of about 40 characters. Under pytest's ``tmp_path`` the same path is about
    100 bytes. The directory is removed after a passing session and kept, with the
    daemon logs, after a failing one.
    """
    root_dir = Path(tempfile.mkdtemp(prefix="snats-")).resolve()
    yield root_dir

    if request.session.testsfailed:
        log.warning("Keeping the Salt daemons' files for inspection in %s", root_dir)
    else:
        shutil.rmtree(root_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def salt_factories_config() -> dict[str, Any]:
    """Keyword arguments for salt-factories' ``FactoriesManager``.

    pytest-salt-factories 1.0.5 requests this fixture from its session-scoped
    ``salt_factories``, so it must be session-scoped as well.
    """
    return {
        # Without coverage there is nothing for the generated scripts' sitecustomize to do.
        "inject_sitecustomize": False,
        "start_timeout": 60,
    }


@pytest.fixture(scope="module")
def make_master(salt_factories: Any) -> Iterator[Callable[..., SaltMaster]]:
    """Return ``make_master(engine_config=None, extra_config=None, *, master_id=None, start=True)``.

    ``engine_config`` becomes the master's ``engines: [{"nats": engine_config}]`` entry,
    and ``extra_config`` is merged over the rest of the master config. With
    ``start=False`` the master is configured but not started; call ``.start()`` or use
    ``with master.started():``. Every master is stopped when the module ends.
    """
    with contextlib.ExitStack() as stack:

        def _make(
            engine_config: dict[str, Any] | None = None,
            extra_config: dict[str, Any] | None = None,
            *,
            master_id: str | None = None,
            start: bool = True,
        ) -> SaltMaster:
            overrides = dict(FAST_MASTER_CONFIG)
            if engine_config is not None:
                overrides["engines"] = [{"nats": engine_config}]
            overrides.update(extra_config or {})

            master = salt_factories.salt_master_daemon(
                master_id or f"master-{secrets.token_hex(3)}", overrides=overrides
            )
            stack.callback(master.terminate)
            if start:
                _start_daemon(master)
            return master

        yield _make


@pytest.fixture(scope="module")
def make_minion(make_master: Any) -> Iterator[Callable[..., SaltMinion]]:
    """Return ``make_minion(master, minion_id="web01.example.com", extra_config=None, *, ...)``.

    The minion connects to ``master``, which accepts its key at once in open mode.
    Every minion is stopped when the module ends, before the masters, because this
    fixture depends on ``make_master``.

    Keyword arguments: ``start=False`` returns the minion configured but not started.
    ``slow_stop=True`` stops it with SIGTERM, which salt-minion 3008.4 took about 5 s
    to act on in these tests. The default, SIGKILL, is enough for tests that do not
    watch the minion shut down.
    """
    with contextlib.ExitStack() as stack:

        def _make(
            master: SaltMaster,
            minion_id: str = "web01.example.com",
            extra_config: dict[str, Any] | None = None,
            *,
            start: bool = True,
            slow_stop: bool = False,
        ) -> SaltMinion:
            overrides = dict(FAST_MINION_CONFIG)
            overrides.update(extra_config or {})

            minion = master.salt_minion_daemon(minion_id, overrides=overrides)
            minion.slow_stop = slow_stop
            stack.callback(minion.terminate)
            if start:
                _start_daemon(minion)
            return minion

        yield _make


def _start_daemon(daemon: SaltMaster | SaltMinion) -> None:
    started_at = time.monotonic()
    daemon.start()
    log.info("%s started in %.1f s", daemon.id, time.monotonic() - started_at)


@pytest.fixture(scope="session")
def fire_master_event() -> Callable[..., Any]:
    """Return ``fire_master_event(master, tag, data=None, timeout=60)``.

    It runs ``salt-run event.send TAG data=JSON`` in a new process, which fires the
    event onto the master's bus as an operator would, and fails the test unless the
    command succeeds. Each call starts one salt-run process, which took 1 to 1.5 s in
    these tests.
    """

    def _fire(
        master: SaltMaster,
        tag: str,
        data: dict[str, Any] | None = None,
        timeout: int = 60,
    ) -> Any:
        salt_run = master.salt_run_cli(timeout=timeout)
        if data is None:
            result = salt_run.run("event.send", tag)
        else:
            result = salt_run.run("event.send", tag, data=data)
        assert result.returncode == 0, f"salt-run event.send {tag!r} failed: {result}"
        assert result.data is True, f"salt-run event.send {tag!r} returned {result.data!r}"
        return result

    return _fire


# --- daemon logs -----------------------------------------------------------------------


# The process field of a log line, "[<processName>(<pid>)]", right-aligned by the format.
LOG_PROCESS_FIELD = re.compile(r"\]\[\s*(?P<name>[^\]]*?)\((?P<pid>\d+)\)\] ")


class DaemonLog:
    """Read a Salt daemon's log file, optionally only the part written after a mark.

    The daemons log at debug level in the format
    ``[time][logger:line][LEVEL   ][process(pid)] message``, so a warning line
    contains ``[WARNING ]``.

    The ``salt``, ``salt-run`` and ``salt-key`` commands read the master's config and
    so append to the master's log too, as ``MainProcess(<their pid>)``. For example,
    salt-run 3008.4 sometimes logs "unclosed MasterEvent" warnings there as it exits.
    Pass ``include_cli=False`` to keep only the daemon's own processes.
    """

    def __init__(self, daemon: SaltMaster | SaltMinion) -> None:
        self.daemon = daemon
        self.path = Path(daemon.config["log_file"])

    def mark(self) -> int:
        """Return the current end of the log, to pass as ``since`` later."""
        return self.path.stat().st_size if self.path.exists() else 0

    def read(self, since: int = 0) -> str:
        """Return the log text written after byte offset ``since``."""
        if not self.path.exists():
            return ""
        with self.path.open("rb") as handle:
            handle.seek(since)
            return handle.read().decode("utf-8", errors="replace")

    def lines(self, since: int = 0, *, include_cli: bool = True) -> list[str]:
        """Return the log lines after ``since``, without other commands' lines unless asked.

        A line without a process field, such as a traceback line, belongs to the
        record above it. NOTE: with the daemon stopped its main pid is unknown, so
        ``include_cli=False`` then drops every ``MainProcess`` line, the daemon's too.
        """
        lines = self.read(since).splitlines()
        if include_cli:
            return lines

        daemon_pid = str(self.daemon.pid) if self.daemon.is_running() else None
        daemon_lines: list[str] = []
        keep_record = True
        for line in lines:
            field = LOG_PROCESS_FIELD.search(line)
            if field is not None:
                is_main_process = field["name"] == "MainProcess"
                keep_record = not is_main_process or field["pid"] == daemon_pid
            if keep_record:
                daemon_lines.append(line)
        return daemon_lines

    def lines_matching(
        self, pattern: str, since: int = 0, *, include_cli: bool = True
    ) -> list[str]:
        """Return the lines after ``since`` that match the regular expression ``pattern``."""
        regex = re.compile(pattern)
        return [line for line in self.lines(since, include_cli=include_cli) if regex.search(line)]

    def wait_for(
        self, pattern: str, since: int = 0, timeout: float = 30.0, *, include_cli: bool = True
    ) -> list[str]:
        """Wait until a line after ``since`` matches ``pattern``, and return the matches."""
        deadline = time.monotonic() + timeout
        while True:
            matches = self.lines_matching(pattern, since, include_cli=include_cli)
            if matches:
                return matches
            if time.monotonic() >= deadline:
                msg = f"no line matching {pattern!r} in {self.path} within {timeout} s"
                raise TimeoutError(msg)
            time.sleep(0.2)


@pytest.fixture(scope="session")
def daemon_log() -> type[DaemonLog]:
    """Return the ``DaemonLog`` class: ``daemon_log(master).lines_matching(r"\\[WARNING")``."""
    return DaemonLog
