"""Run one engine instance inside the process the master started for it.

The master calls the engine's ``start()`` in a child process and restarts it about
10 seconds after it returns or raises, with no backoff. So this module:

* logs an invalid configuration once and then idles until SIGTERM, instead of
  returning into a restart loop that would repeat the error every 10 seconds;
* runs the asyncio pipeline in its own thread with a fresh event loop, because the
  engine process is forked from inside the master's running loop, and keeps the
  main thread for signals;
* on SIGTERM or SIGINT asks the pipeline to publish what it buffered and close
  within ``shutdown_timeout`` (below the master's 5 second kill delay).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import re
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any

from salt_nats.bus import MasterBus
from salt_nats.config import ConfigError, EngineSettings, parse_engine_settings
from salt_nats.forwarder import BusSource, Forwarder
from salt_nats.status import Stats

log = logging.getLogger(__name__)

_ENGINE_NAME_RE = re.compile(r"name=([^)]+)\)")


def engine_name_from_process() -> str:
    """Return the ``engines:`` entry name the master gave this process, or ``nats``.

    With ``engine_module: nats`` the master names the process
    ``Engine(<module>, name=<entry name>)``; that name tells instances apart.
    """
    match = _ENGINE_NAME_RE.search(multiprocessing.current_process().name)
    return match.group(1) if match else "nats"


def load_settings(options: Mapping[str, Any] | None) -> EngineSettings | None:
    """Parse the engine options; log the error and return None when they are invalid."""
    try:
        return parse_engine_settings(options, default_name=engine_name_from_process())
    except ConfigError as exc:
        log.error(
            "salt-nats engine not started: %s. The engine stays idle until the master "
            "restarts; correct the engines: entry in the master config.",
            exc,
        )
        return None


def run_engine(
    opts: Mapping[str, Any],
    options: Mapping[str, Any] | None,
    bus_factory: Callable[[EngineSettings], BusSource] | None = None,
) -> None:
    """Run one engine instance until SIGTERM or SIGINT; the body of ``start()``."""
    stop_requested = threading.Event()
    settings = load_settings(options)

    if settings is None:
        _wait_for_signal(stop_requested)
        return

    stats = Stats()
    if bus_factory is None:
        bus: BusSource = MasterBus(opts, stats, settings.name)
    else:
        bus = bus_factory(settings)

    forwarder_holder: dict[str, Forwarder] = {}
    loop = asyncio.new_event_loop()

    async def main() -> None:
        # The forwarder makes asyncio objects, so it is built on the loop's thread.
        forwarder = Forwarder(settings, str(opts.get("id", "master")), bus, stats)
        forwarder_holder["forwarder"] = forwarder
        if stop_requested.is_set():
            forwarder.stop()
        await forwarder.run()

    def request_stop(*_args: object) -> None:
        stop_requested.set()
        forwarder = forwarder_holder.get("forwarder")
        if forwarder is not None and not loop.is_closed():
            loop.call_soon_threadsafe(forwarder.stop)

    def loop_thread() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        except Exception:
            log.exception("salt-nats %s: the engine failed", settings.name)
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


def _wait_for_signal(stop_requested: threading.Event) -> None:
    previous = _install_handlers(lambda *_: stop_requested.set())
    try:
        while not stop_requested.wait(1.0):
            pass
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
