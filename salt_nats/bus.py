"""Read raw frames from a salt-master's event bus on an asyncio loop.

This is the only module of the pipeline that imports Salt. It uses
``salt.transport.ipc_publish_client``, the client that ``SaltEvent`` itself builds
for ``io_loop`` mode, and reads frames with ``await recv()``. It is an internal Salt
API, seen working on salt 3008.4.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import salt.transport

from salt_nats.status import Stats

log = logging.getLogger(__name__)


class MasterBus:
    """Subscriber to the master event publisher in ``sock_dir``.

    ``recv`` reconnects by itself after the publisher drops the connection (for
    example when the master restarts it, or disconnects a slow reader); each
    disconnect and connect is counted in :class:`Stats`.
    """

    def __init__(self, opts: Mapping[str, Any], stats: Stats, name: str) -> None:
        self.opts = opts
        self.stats = stats
        self.name = name
        self._client: Any = None

    async def connect(self) -> None:
        """Connect to the publisher, retrying until it accepts the connection."""
        loop = asyncio.get_running_loop()
        self._client = salt.transport.ipc_publish_client("master", dict(self.opts), io_loop=loop)
        await self._client.connect(
            connect_callback=self._on_connect, disconnect_callback=self._on_disconnect
        )

    async def recv(self) -> bytes | None:
        """Return the next raw frame ``<tag>\\n\\n<msgpack data>``; waits for one."""
        frame = await self._client.recv()
        if frame is None or isinstance(frame, bytes):
            return frame
        # Older transports hand out a bytearray or memoryview.
        return bytes(frame)

    def close(self) -> None:
        """Close the subscription; a pending ``recv`` ends."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _on_connect(self, _connected: bool = True) -> None:
        self.stats.bus_connects += 1
        if self.stats.bus_connects > 1:
            log.info("salt-nats %s: reconnected to the master event bus", self.name)

    async def _on_disconnect(self) -> None:
        self.stats.bus_disconnects += 1
        log.warning(
            "salt-nats %s: the master event bus closed the connection; reconnecting "
            "(events published meanwhile are lost; see pub_server_write_queue_size)",
            self.name,
        )


class BusFirer:
    """Fire events onto the master bus from an asyncio loop without blocking it.

    Salt's synchronous ``fire_event`` runs its own private loop, so it must not run
    on the engine's loop thread; one worker thread serves every call, because a
    ``SaltEvent`` is not safe to share between threads.
    """

    def __init__(self, opts: Mapping[str, Any]) -> None:
        self.opts = opts
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="salt-nats-fire")
        self._event: Any = None

    def _fire(self, data: dict[str, Any], tag: str) -> bool:
        import salt.utils.event

        if self._event is None:
            self._event = salt.utils.event.get_master_event(
                dict(self.opts), self.opts["sock_dir"], listen=False
            )
        return bool(self._event.fire_event(data, tag))

    async def fire(self, data: dict[str, Any], tag: str) -> bool:
        """Fire one event; return False when the bus did not take it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._fire, data, tag)

    def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)
