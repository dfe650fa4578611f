"""One background asyncio loop per process, and the NATS clients that live on it.

Salt calls returners from synchronous code: minion job processes and threads, master
worker processes, the master's event return process and command-line tools. nats-py
needs a running asyncio loop, and a connection is worth keeping between calls, so
each process gets one daemon thread that runs a loop, started on the first call.
Callers submit coroutines to it and wait for the result with a deadline.

``fork()`` copies only the calling thread, so a child process cannot use the loop of
its parent. :func:`get_loop` notices the new process id and starts a new loop; the
parent's clients, buffers and locks are not used in the child.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client

from salt_nats.config import redact_url
from salt_nats.connection import close_quietly
from salt_nats.status import RateLimitedLog

log = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds a caller waits beyond its own deadline for the loop to hand back the
# result, so that a coroutine that honours the deadline is never cut off early.
RESULT_GRACE = 0.5

# Most clients kept per process. Each distinct set of connection options (for
# example a `--return_config` profile) gets its own client.
MAX_CLIENTS = 8


class NotConnectedError(ConnectionError):
    """No connection to a NATS server was available before the call's deadline."""


# Errors of a failed connect attempt, as nats-py reports them through error_cb: a
# refused or unreachable server, a server that does not respond within
# connect_timeout, and rejected credentials.
_CONNECT_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.AuthorizationError,
    nats.errors.NoServersError,
)


class BackgroundLoop:
    """An asyncio loop running in a daemon thread of the current process.

    ``resources`` contains objects bound to this loop, such as NATS clients and event
    buffers, so that they are dropped together with the loop after a fork.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.resources: dict[str, Any] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="salt-nats-loop", daemon=True)
        self._thread.start()
        log.debug("salt-nats: started the background loop of process %d", self.pid)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(
        self,
        coroutine_function: Callable[..., Coroutine[Any, Any, T]],
        *args: Any,
        timeout: float,
        cancel_on_timeout: bool = True,
    ) -> T:
        """Run ``coroutine_function(*args)`` on the loop and return its result.

        Waits at most ``timeout`` seconds plus a short grace and then raises
        TimeoutError. With ``cancel_on_timeout=False`` the coroutine keeps running
        in the background after the caller gave up. Raises RuntimeError when called
        from the loop's own thread, where waiting would deadlock.
        """
        if threading.get_ident() == self._thread.ident:
            raise RuntimeError("BackgroundLoop.run() was called from the loop's own thread")

        future = asyncio.run_coroutine_threadsafe(coroutine_function(*args), self.loop)
        try:
            return future.result(timeout + RESULT_GRACE)
        except concurrent.futures.TimeoutError:
            if cancel_on_timeout:
                future.cancel()
            raise TimeoutError(f"the call did not finish within {timeout:.1f} s") from None

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Schedule ``callback(*args)`` on the loop from any thread, without waiting."""
        self.loop.call_soon_threadsafe(callback, *args)


_loop: BackgroundLoop | None = None
_loop_lock = threading.Lock()


def get_loop() -> BackgroundLoop:
    """Return this process's background loop, starting it on first use or after a fork."""
    global _loop
    current = _loop
    if current is not None and current.pid == os.getpid():
        return current
    with _loop_lock:
        if _loop is None or _loop.pid != os.getpid():
            _loop = BackgroundLoop()
        return _loop


def _forget_parent_loop() -> None:
    # Runs in the child right after fork(). The parent's loop thread does not exist
    # here, and the lock may have been held by another thread at the moment of the fork.
    global _loop, _loop_lock
    _loop = None
    _loop_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_loop)


class SharedClient:
    """A NATS client that every call of this process with the same options shares.

    The client connects in the background and reconnects by itself (nats-py retries
    every server until one accepts the connection). A call waits for the connection until its own
    deadline, or until each server has failed one attempt, whichever comes first:
    a refused connection fails the call at once. After one call found no connection,
    later calls fail at once until the client connects, so a NATS outage costs each
    process at most one deadline and not one per call.

    Every method must run on the background loop.
    """

    def __init__(self, options: dict[str, Any], label: str, drop_log_interval: float) -> None:
        self.options = options
        self.label = label
        self.client: Client | None = None
        self._ready = asyncio.Event()
        # Set when failed connect attempts since the last connect or disconnect
        # number at least as many as there are servers.
        self._attempts_failed = asyncio.Event()
        self._failures = 0
        self._last_failure: BaseException | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._unreachable = False
        self._ready_callbacks: list[Callable[[], None]] = []
        self._error_log = RateLimitedLog(log, drop_log_interval, prefix=label)

    @property
    def servers(self) -> str:
        """The server URLs without user info, for log lines and errors."""
        return ",".join(redact_url(url) for url in self.options["servers"])

    def add_ready_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on the loop after every connect and reconnect."""
        self._ready_callbacks.append(callback)

    def connected_client(self) -> Client | None:
        """Return the client if it is connected now, else None; never waits."""
        client = self.client
        if client is not None and client.is_connected:
            return client
        return None

    async def wait_connected(self, deadline: float) -> Client:
        """Return the connected client, waiting until ``deadline`` (the loop's clock).

        Raises :class:`NotConnectedError` when no connection is up by then.
        """
        client = self.connected_client()
        if client is not None:
            return client

        self._start_connecting()
        remaining = 0.0 if self._unreachable else deadline - asyncio.get_running_loop().time()
        if remaining > 0:
            await _wait_first(remaining, self._ready, self._attempts_failed)

        client = self.connected_client()
        if client is not None:
            return client

        if self._attempts_failed.is_set():
            reason = f"every server failed to connect, the last with {self._last_failure!r}"
        elif self._unreachable:
            reason = "an earlier call found no connection"
        else:
            reason = "no server answered before the deadline"
        if not self._unreachable:
            self._unreachable = True
            log.warning(
                "%s: no connection to NATS (%s): %s; calls fail at once until it connects",
                self.label,
                self.servers,
                reason,
            )
        raise NotConnectedError(f"not connected to NATS ({self.servers}): {reason}")

    def _start_connecting(self) -> None:
        # A client that exists is connected or reconnecting by itself.
        if self.client is not None:
            return
        if self._connect_task is None or self._connect_task.done():
            self._connect_task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        backoff = max(float(self.options.get("reconnect_time_wait", 1.0)), 0.1)
        while True:
            client = Client()
            try:
                # With max_reconnect_attempts=-1, connect() itself keeps trying
                # every server; it raises only on errors it treats as final.
                await client.connect(
                    **self.options,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                )
            except asyncio.CancelledError:
                await close_quietly(client)
                raise
            except Exception as exc:  # nats-py raises many types here
                log.warning(
                    "%s: connecting to NATS (%s) failed: %r; retrying in %.1f s",
                    self.label,
                    self.servers,
                    exc,
                    backoff,
                )
                await close_quietly(client)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue

            self.client = client
            log.info(
                "%s: connected to NATS server %s (max_payload %d bytes)",
                self.label,
                _server_url(client),
                client.max_payload,
            )
            self._set_ready()
            return

    def _set_ready(self) -> None:
        self._unreachable = False
        self._reset_failures()
        self._ready.set()
        for callback in self._ready_callbacks:
            callback()

    async def close(self) -> None:
        """Stop connecting and close the client."""
        if self._connect_task is not None:
            self._connect_task.cancel()
        if self.client is not None:
            await close_quietly(self.client)

    # nats-py callbacks. They must not raise.

    async def _on_error(self, exc: Exception) -> None:
        self._error_log.note(type(exc).__name__, "%s: NATS error: %r", self.label, exc)
        if isinstance(exc, _CONNECT_ERRORS) and self.connected_client() is None:
            self._failures += 1
            self._last_failure = exc
            if self._failures >= len(self.options["servers"]):
                self._attempts_failed.set()

    async def _on_disconnected(self) -> None:
        self._ready.clear()
        self._reset_failures()
        log.warning("%s: disconnected from NATS; the client reconnects", self.label)

    def _reset_failures(self) -> None:
        self._failures = 0
        self._attempts_failed.clear()

    async def _on_reconnected(self) -> None:
        log.info("%s: reconnected to NATS server %s", self.label, _server_url(self.client))
        self._set_ready()

    async def _on_closed(self) -> None:
        # A closed client never reconnects. The next call builds a new one.
        self._ready.clear()
        self.client = None
        self._connect_task = None


def shared_client(
    background: BackgroundLoop, options: dict[str, Any], label: str, drop_log_interval: float
) -> SharedClient:
    """Return the process's :class:`SharedClient` for ``options``, creating it if needed.

    Must run on the background loop. Beyond :data:`MAX_CLIENTS` option sets, the
    oldest client is closed.
    """
    clients: dict[str, SharedClient] = background.resources.setdefault("clients", {})
    key = json.dumps(options, sort_keys=True, default=str)
    shared = clients.get(key)
    if shared is None:
        if len(clients) >= MAX_CLIENTS:
            oldest_key = next(iter(clients))
            background.loop.create_task(clients.pop(oldest_key).close())
        shared = SharedClient(options, label, drop_log_interval)
        clients[key] = shared
    return shared


async def _wait_first(timeout: float, *events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set, or ``timeout`` seconds have passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _server_url(client: Client | None) -> str:
    if client is None or client.connected_url is None:
        return "(unknown)"
    return redact_url(client.connected_url.geturl())
