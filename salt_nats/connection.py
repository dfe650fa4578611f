"""nats-py connection options and a supervisor that keeps one client connected."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client

from salt_nats.config import EngineSettings, redact_url
from salt_nats.status import RateLimitedLog, Stats

log = logging.getLogger(__name__)


def connect_options(settings: EngineSettings, connection_name: str) -> dict[str, Any]:
    """Return the keyword arguments for ``nats.connect`` (without callbacks)."""
    return {
        "servers": list(settings.servers),
        "name": connection_name,
        "allow_reconnect": True,
        # -1 retries forever, both for the first connect and after a disconnect.
        "max_reconnect_attempts": -1,
        "connect_timeout": settings.connect_timeout,
        "reconnect_time_wait": settings.reconnect_time_wait,
        "ping_interval": settings.ping_interval,
        "max_outstanding_pings": settings.max_outstanding_pings,
        "flush_timeout": settings.flush_timeout,
        "pending_size": settings.pending_size,
        # The engine never subscribes to what it publishes.
        "no_echo": True,
    }


class NatsSupervisor:
    """Connect to NATS in the background and rebuild the client if it ever closes.

    nats-py reconnects by itself after a disconnect; a client only ends up closed
    after an error it treats as fatal, or when ``close()`` is called. The supervisor
    makes a new client in the first case, waiting longer after each failure, up to
    ``reconnect_max_wait`` seconds.
    """

    def __init__(
        self,
        settings: EngineSettings,
        stats: Stats,
        connection_name: str,
        on_ready: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.connection_name = connection_name
        self.on_ready = on_ready
        self.client: Client | None = None
        self._closed_event = asyncio.Event()
        self._stopping = False
        self._error_log = RateLimitedLog(
            log, settings.drop_log_interval, prefix=f"salt-nats {settings.name}"
        )

    @property
    def connected_client(self) -> Client | None:
        """Return the client if it is connected now, else None."""
        client = self.client
        if client is not None and client.is_connected:
            return client
        return None

    @property
    def state(self) -> str:
        """One of connected, reconnecting, connecting or stopped."""
        if self._stopping:
            return "stopped"
        client = self.client
        if client is None:
            return "connecting"
        if client.is_connected:
            return "connected"
        return "reconnecting"

    @property
    def connected_url(self) -> str | None:
        """Return the URL of the server the client is connected to, without user info."""
        client = self.connected_client
        if client is None or client.connected_url is None:
            return None
        return redact_url(client.connected_url.geturl())

    async def run(self) -> None:
        """Keep a client connected until :meth:`close` is called."""
        backoff = max(self.settings.reconnect_time_wait, 0.1)
        while not self._stopping:
            self._closed_event.clear()
            client = Client()
            try:
                # With max_reconnect_attempts=-1, connect() keeps trying every
                # server until one answers; failures reach _on_error meanwhile.
                await client.connect(
                    **connect_options(self.settings, self.connection_name),
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                )
            except asyncio.CancelledError:
                await _close_quietly(client)
                raise
            except Exception as exc:  # nats-py raises many types here
                self.stats.nats_errors += 1
                self.stats.record_error(f"connect failed: {exc!r}")
                log.warning(
                    "salt-nats %s: connecting to NATS failed: %r; retrying in %.1f s",
                    self.settings.name,
                    exc,
                    backoff,
                )
                await _close_quietly(client)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.reconnect_max_wait)
                continue

            self.client = client
            self.stats.nats_connects += 1
            backoff = max(self.settings.reconnect_time_wait, 0.1)
            log.info(
                "salt-nats %s: connected to NATS server %s (version %s, max_payload %d bytes)",
                self.settings.name,
                self.connected_url,
                _version(client),
                client.max_payload,
            )
            self.on_ready()
            await self._closed_event.wait()
            if not self._stopping:
                log.warning(
                    "salt-nats %s: the NATS client closed (%r); building a new one",
                    self.settings.name,
                    client.last_error,
                )
                self.client = None

    async def close(self, flush_timeout: float) -> None:
        """Flush what the client holds, within ``flush_timeout`` seconds, and close it."""
        self._stopping = True
        self._closed_event.set()
        client = self.client
        if client is None or client.is_closed:
            return
        if client.is_connected and flush_timeout > 0:
            try:
                await client.flush(timeout=max(flush_timeout, 0.05))
            except Exception as exc:  # best effort at shutdown
                log.warning("salt-nats %s: final flush to NATS failed: %r", self.settings.name, exc)
        await _close_quietly(client)

    # nats-py callbacks. They must not raise: nats-py logs and swallows nothing.

    async def _on_error(self, exc: Exception) -> None:
        self.stats.nats_errors += 1
        self.stats.record_error(repr(exc))
        self._error_log.note(
            type(exc).__name__, "salt-nats %s: NATS error: %r", self.settings.name, exc
        )

    async def _on_disconnected(self) -> None:
        if self._stopping:
            return
        self.stats.nats_disconnects += 1
        log.warning(
            "salt-nats %s: disconnected from NATS; events are buffered while the client reconnects",
            self.settings.name,
        )

    async def _on_reconnected(self) -> None:
        self.stats.nats_reconnects += 1
        log.info(
            "salt-nats %s: reconnected to NATS server %s", self.settings.name, self.connected_url
        )
        self.on_ready()

    async def _on_closed(self) -> None:
        self._closed_event.set()


def _version(client: Client) -> str:
    version = client.connected_server_version
    return f"{version.major}.{version.minor}.{version.patch}"


async def _close_quietly(client: Client) -> None:
    if client.is_closed:
        return
    try:
        await client.close()
    except Exception as exc:  # closing a broken client may fail in many ways
        log.debug("closing the NATS client failed: %r", exc)
