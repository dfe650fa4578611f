"""Run one engine instance inside the process the master started for it.

The master calls the engine's ``start()`` in a child process and restarts it about
10 seconds after it returns or raises, with no backoff. So this module:

* logs an invalid configuration once and then idles until SIGTERM, replying to
  status requests with the error, instead of returning into a restart loop that
  would repeat the error every 10 seconds;
* runs the asyncio pipeline in its own thread with a fresh event loop, because the
  engine process is forked from inside the master's running loop, and keeps the
  main thread for signals;
* on SIGTERM or SIGINT asks the pipeline to publish what it buffered and close
  within ``shutdown_timeout`` (below the master's 5 second kill delay).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from salt_nats import control
from salt_nats.bus import BusFirer, MasterBus
from salt_nats.codec import split_frame, unpack_data
from salt_nats.config import ConfigError, EngineSettings, parse_engine_settings
from salt_nats.forwarder import BusSource, Forwarder
from salt_nats.secrets import resolve_secrets
from salt_nats.status import Stats

log = logging.getLogger(__name__)

_ENGINE_NAME_RE = re.compile(r"name=([^)]+)\)")


def engine_name_from_process() -> str:
    """Return the ``engines:`` entry name the master gave this process, or ``nats``.

    With ``engine_module: nats`` the master names the process
    ``Engine(<module>, name=<entry name>)``; that name distinguishes the instances.
    """
    match = _ENGINE_NAME_RE.search(multiprocessing.current_process().name)
    return match.group(1) if match else "nats"


def load_settings(
    options: Mapping[str, Any] | None, name: str, opts: Mapping[str, Any] | None = None
) -> tuple[EngineSettings | None, ConfigError | None]:
    """Parse the engine options, resolve their secrets and check the files they name.

    Logs the error once when they are invalid.
    """
    try:
        settings = parse_engine_settings(options, default_name=name)
        return resolve_secrets(settings, opts), None
    except ConfigError as exc:
        log.error(
            "salt-nats engine %s not started: %s. The instance stays idle and reports the "
            "error to salt-run nats.status; correct the engines: entry in the master config "
            "and restart salt-master.",
            name,
            exc,
        )
        return None, exc


def default_status_dir(opts: Mapping[str, Any]) -> str:
    """Return the status folder under the master's cachedir."""
    return os.path.join(str(opts.get("cachedir", "/var/cache/salt/master")), "salt-nats")


def run_engine(
    opts: Mapping[str, Any],
    options: Mapping[str, Any] | None,
    bus_factory: Callable[[EngineSettings], BusSource] | None = None,
) -> None:
    """Run one engine instance until SIGTERM or SIGINT; the body of ``start()``."""
    name = control.instance_name(options, engine_name_from_process())
    settings, error = load_settings(options, name, opts)
    master_id = str(opts.get("id", "master"))

    if settings is None:
        status_dir = default_status_dir(opts)
        instance: _Instance = FailedInstance(
            name, master_id, str(error), MasterBus(opts, Stats(), name), BusFirer(opts), status_dir
        )
        _run_until_signal(instance)
        return

    stats = Stats()
    bus = bus_factory(settings) if bus_factory else MasterBus(opts, stats, settings.name)

    def build() -> Forwarder:
        return Forwarder(
            settings,
            master_id,
            bus,
            stats,
            firer=BusFirer(opts),
            status_dir=settings.status_dir or default_status_dir(opts),
        )

    _run_until_signal(_ForwarderInstance(build))


class _Instance(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


class _ForwarderInstance:
    """Builds the forwarder on the loop's thread, because it makes asyncio objects."""

    def __init__(self, build: Callable[[], Forwarder]) -> None:
        self._build = build
        self._forwarder: Forwarder | None = None
        self._stop_early = False

    async def run(self) -> None:
        self._forwarder = self._build()
        if self._stop_early:
            self._forwarder.stop()
        await self._forwarder.run()

    def stop(self) -> None:
        if self._forwarder is None:
            self._stop_early = True
        else:
            self._forwarder.stop()


class FailedInstance:
    """An instance with an invalid configuration: it forwards nothing but reports why.

    It replies to status requests on the bus and writes heartbeats, so
    ``salt-run nats.status`` shows the error instead of a silent gap. Staying up
    also keeps the master from restarting it, and logging the error, every 10 s.
    """

    def __init__(
        self,
        name: str,
        master_id: str,
        error: str,
        bus: BusSource,
        firer: BusFirer,
        status_dir: str,
        heartbeat_interval: float = 10.0,
    ) -> None:
        self.name = name
        self.master_id = master_id
        self.error = error
        self.bus = bus
        self.firer = firer
        self.status_dir = status_dir
        self.heartbeat_interval = heartbeat_interval
        self.started_at = time.time()
        self._stop: asyncio.Event | None = None

    def report(self) -> dict[str, Any]:
        """Return the status report of the failed instance."""
        started_at = _iso(self.started_at)
        return {
            "instance": self.name,
            "master": self.master_id,
            "state": control.STATE_FAILED,
            "pid": os.getpid(),
            "started_at": started_at,
            "uptime": round(time.time() - self.started_at, 3),
            "last_error": self.error,
            "last_error_time": started_at,
        }

    async def run(self) -> None:
        self._stop = asyncio.Event()
        await self.bus.connect()
        reader = asyncio.create_task(self._answer_requests())
        try:
            while True:
                control.write_heartbeat(self.status_dir, self.name, self.report())
                try:
                    await asyncio.wait_for(self._stop.wait(), self.heartbeat_interval)
                    break
                except asyncio.TimeoutError:
                    continue
        finally:
            reader.cancel()
            self.bus.close()
            self.firer.close()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _answer_requests(self) -> None:
        prefix = control.STATUS_REQUEST_TAG.encode() + b"\n\n"
        while True:
            frames = await self.bus.recv_batch()
            if not frames:
                return  # the bus is closed
            for frame in frames:
                if not frame.startswith(prefix):
                    continue
                _, packed = split_frame(frame)
                request = unpack_data(packed)
                request_id = request.get("request_id") if isinstance(request, dict) else None
                if request_id:
                    await self.firer.fire(
                        self.report(), control.reply_tag(str(request_id), self.name)
                    )


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()


def _run_until_signal(instance: _Instance) -> None:
    """Run ``instance`` on a new loop in a thread; SIGTERM and SIGINT stop it."""
    loop = asyncio.new_event_loop()

    def request_stop(*_args: object) -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(instance.stop)

    def loop_thread() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(instance.run())
        except Exception:
            log.exception("salt-nats: the engine failed")
        finally:
            loop.close()

    previous = _install_handlers(request_stop)
    thread = threading.Thread(target=loop_thread, name="salt-nats-loop", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    finally:
        _restore_handlers(previous)


_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _install_handlers(handler: Callable[..., None]) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in _SIGNALS:
        previous[signum] = signal.signal(signum, handler)
    return previous


def _restore_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
