"""Read raw frames from a salt-master's event bus on an asyncio loop.

This is the only module of the pipeline that imports Salt. The master's
EventPublisher writes every event to each subscriber of ``master_event_pub.ipc`` (or
of ``tcp_master_pub_port`` with ``ipc_mode: tcp``) in the framing of Salt's TCP
transport: a msgpack map made by ``salt.transport.frame.frame_msg``, whose ``body``
is the raw frame ``<tag>\n\n<msgpack data>``. :class:`MasterBus` takes that address
from Salt's own ``salt.transport.ipc_publish_client`` and its unpacker from
``salt.utils.msgpack``, and reads the socket with an :class:`asyncio.Protocol`.
Both are internal Salt APIs, seen working on salt 3008.4.

Why not ``await recv()`` on Salt's client: each read there runs in a task of its
own, behind an ``asyncio.shield`` and tornado's ``IOStream``, and each ``await``
returns one frame. The protocol hands over all frames of a read in one list, which
costs fewer loop turns per event. Together with publishing from the reader
(``salt_nats.forwarder``), it cut the engine's CPU per event at 500 events/s by 18
to 20 % (``make bench`` on 2 cores with salt 3008.4, in docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import salt.transport
import salt.utils.msgpack

from salt_nats.status import Stats

log = logging.getLogger(__name__)

# Seconds between attempts to reach the bus, doubling up to the maximum.
_RECONNECT_FIRST = 0.05
_RECONNECT_MAX = 1.0


class BusAddressError(RuntimeError):
    """Salt's client names neither a socket path nor a host and port for the bus."""


def bus_address(
    opts: Mapping[str, Any], loop: asyncio.AbstractEventLoop
) -> tuple[str | None, str | None, int | None]:
    """Return ``(path, host, port)`` of the master's event publisher, as Salt computes it."""
    client = salt.transport.ipc_publish_client("master", dict(opts), io_loop=loop)
    try:
        path = getattr(client, "path", None)
        host = getattr(client, "host", None)
        port = getattr(client, "port", None)
    finally:
        client.close()
    if path:
        return str(path), None, None
    if host and port:
        return None, str(host), int(port)
    raise BusAddressError(
        f"salt.transport.ipc_publish_client returned {type(client).__name__} without a "
        "path or host and port; this salt version is not supported"
    )


class _BusProtocol(asyncio.Protocol):
    def __init__(self, bus: MasterBus) -> None:
        self.bus = bus
        self.unpacker = salt.utils.msgpack.Unpacker()
        self.lost = asyncio.get_running_loop().create_future()
        self.invalid_messages = 0

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        frames = []
        for message in self.unpacker:
            body = message.get(b"body") if isinstance(message, dict) else None
            if isinstance(body, bytes):
                frames.append(body)
            elif isinstance(body, (bytearray, memoryview)):
                frames.append(bytes(body))
            else:
                self._note_invalid(message)
        if frames:
            self.bus._deliver(frames)

    def _note_invalid(self, message: object) -> None:
        # Salt's publisher sends only event frames, so this is logged once per
        # connection and otherwise only recorded in the status.
        self.invalid_messages += 1
        self.bus.stats.record_error("the event bus sent a message without a frame")
        if self.invalid_messages == 1:
            log.warning(
                "salt-nats %s: ignored a message from the event bus without a frame: %.200r",
                self.bus.name,
                message,
            )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class MasterBus:
    """Subscriber to the master event publisher.

    :meth:`recv_batch` hands out every frame read so far. The connection is kept by
    a task of its own: after the publisher drops it (when the master restarts its
    publisher, or disconnects a slow reader), it connects again, and each disconnect
    and connect is counted in :class:`Stats`.

    Frames wait in a list between a socket read and the next :meth:`recv_batch`.
    The list contains at most what the loop read in one turn, as long as the caller
    calls :meth:`recv_batch` again without waiting on anything else.
    """

    def __init__(self, opts: Mapping[str, Any], stats: Stats, name: str) -> None:
        self.opts = opts
        self.stats = stats
        self.name = name
        self._frames: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._closed = False

    async def connect(self) -> None:
        """Connect to the publisher, retrying until it accepts the connection or
        :meth:`close` is called."""
        loop = asyncio.get_running_loop()
        path, host, port = bus_address(self.opts, loop)
        connected = loop.create_future()
        self._keeper = asyncio.create_task(
            self._keep_connected(path, host, port, connected), name="salt-nats-bus"
        )
        self._keeper.add_done_callback(lambda task: self._on_keeper_done(task, connected))
        try:
            await asyncio.shield(connected)
        except asyncio.CancelledError:
            if not connected.cancelled():
                raise  # the caller was cancelled
            # close() while waiting: recv_batch() returns an empty list from now on.

    async def recv_batch(self) -> list[bytes]:
        """Return the frames ``<tag>\\n\\n<msgpack data>`` read so far; waits for one."""
        while not self._frames:
            if self._closed:
                return []
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frames, self._frames = self._frames, []
        return frames

    def close(self) -> None:
        """Close the subscription; a pending :meth:`recv_batch` returns an empty list."""
        self._closed = True
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._wake()

    def _on_keeper_done(self, task: asyncio.Task[None], connected: asyncio.Future[None]) -> None:
        if task.cancelled():
            connected.cancel()  # close() during connect() ends the wait
            return
        if task.exception() is None:
            return
        log.error(
            "salt-nats %s: reading the master event bus failed",
            self.name,
            exc_info=task.exception(),
        )
        if not connected.done():
            connected.set_exception(task.exception())  # connect() raises it
        self._closed = True
        self._wake()  # recv_batch() returns an empty list, and the reader stops

    def _deliver(self, frames: list[bytes]) -> None:
        self._frames.extend(frames)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _open(
        self, path: str | None, host: str | None, port: int | None
    ) -> tuple[asyncio.BaseTransport, _BusProtocol]:
        loop = asyncio.get_running_loop()
        if path is not None:
            return await loop.create_unix_connection(lambda: _BusProtocol(self), path)
        return await loop.create_connection(lambda: _BusProtocol(self), host, port)

    async def _keep_connected(
        self,
        path: str | None,
        host: str | None,
        port: int | None,
        connected: asyncio.Future[None],
    ) -> None:
        where = path or f"{host}:{port}"
        delay = _RECONNECT_FIRST
        while not self._closed:
            try:
                transport, protocol = await self._open(path, host, port)
            except OSError as exc:
                log.debug(
                    "salt-nats %s: cannot reach the event bus at %s: %s", self.name, where, exc
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX)
                continue
            delay = _RECONNECT_FIRST
            self._transport = transport
            self.stats.bus_connects += 1
            if self.stats.bus_connects > 1:
                log.info("salt-nats %s: reconnected to the master event bus", self.name)
            if not connected.done():
                connected.set_result(None)
            try:
                await protocol.lost
            finally:
                if self._transport is transport:
                    self._transport = None
                transport.close()
            if self._closed:
                return
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
