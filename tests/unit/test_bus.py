"""MasterBus against a local Unix socket that speaks the master publisher's framing.

The integration tests read a real salt-master's bus. These tests cover what a
master rarely does on demand: frames split across reads, many frames in one read,
and a publisher that drops the connection and comes back.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import salt.transport.frame
import salt.utils.event

from salt_nats.bus import MasterBus
from salt_nats.status import Stats


class Publisher:
    """A Unix socket server at ``<sock_dir>/master_event_pub.ipc`` that sends framed events."""

    def __init__(self, sock_dir: Path) -> None:
        self.path = str(sock_dir / "master_event_pub.ipc")
        self.writers: list[asyncio.StreamWriter] = []
        self.connected = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._accept, self.path)

    async def _accept(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.connected.set()

    async def send(self, data: bytes) -> None:
        writer = self.writers[-1]
        writer.write(data)
        await writer.drain()

    async def drop_clients(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        self.connected.clear()

    async def stop(self) -> None:
        await self.drop_clients()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        if os.path.exists(self.path):
            os.unlink(self.path)


def framed(tag: str, data: dict[str, Any]) -> tuple[bytes, bytes]:
    """Return the bus frame and the bytes the publisher writes for it."""
    frame = salt.utils.event.SaltEvent.pack(tag, data)
    return frame, salt.transport.frame.frame_msg(frame)


def opts_for(sock_dir: Path) -> dict[str, Any]:
    return {"ipc_mode": "ipc", "sock_dir": str(sock_dir), "transport": "zeromq"}


async def start_pair(sock_dir: Path) -> tuple[Publisher, MasterBus, Stats]:
    """Start a publisher and a MasterBus connected to it."""
    publisher = Publisher(sock_dir)
    await publisher.start()
    stats = Stats()
    bus = MasterBus(opts_for(sock_dir), stats, "test")
    await bus.connect()
    await asyncio.wait_for(publisher.connected.wait(), 5)
    return publisher, bus, stats


async def recv_until(bus: MasterBus, count: int) -> list[bytes]:
    frames: list[bytes] = []
    while len(frames) < count:
        frames += await asyncio.wait_for(bus.recv_batch(), 5)
    return frames


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    # Unix socket paths are limited to about 100 bytes.
    short = Path(f"/tmp/salt-nats-bus-{os.getpid()}-{tmp_path.name[-12:]}")
    short.mkdir(parents=True, exist_ok=True)
    yield short
    for entry in short.iterdir():
        entry.unlink()
    short.rmdir()


def test_frames_split_across_reads_and_batched(sock_dir: Path) -> None:
    async def scenario() -> None:
        publisher, bus, stats = await start_pair(sock_dir)

        pairs = [framed(f"test/bus/{n}", {"n": n, "pad": "x" * n}) for n in range(50)]
        frames = [frame for frame, _ in pairs]
        data = b"".join(wire for _, wire in pairs)
        # The first frame arrives in two pieces, and the other 49 in one write.
        await publisher.send(data[:3])
        await asyncio.sleep(0.01)
        await publisher.send(data[3:10])
        await asyncio.sleep(0.01)
        await publisher.send(data[10:])
        received = await recv_until(bus, 50)
        assert received == frames
        assert stats.bus_connects == 1
        assert stats.bus_disconnects == 0
        bus.close()
        assert await bus.recv_batch() == []
        await publisher.stop()

    asyncio.run(scenario())


def test_reconnects_after_the_publisher_drops_it(sock_dir: Path) -> None:
    async def scenario() -> None:
        publisher, bus, stats = await start_pair(sock_dir)
        first, wire = framed("test/bus/before", {"n": 1})
        await publisher.send(wire)
        assert await recv_until(bus, 1) == [first]

        await publisher.drop_clients()
        await asyncio.wait_for(publisher.connected.wait(), 5)
        second, wire = framed("test/bus/after", {"n": 2})
        await publisher.send(wire)
        assert await recv_until(bus, 1) == [second]
        assert stats.bus_connects == 2
        assert stats.bus_disconnects == 1
        bus.close()
        await publisher.stop()

    asyncio.run(scenario())


def test_connect_waits_for_a_publisher_that_starts_late(sock_dir: Path) -> None:
    async def scenario() -> None:
        stats = Stats()
        bus = MasterBus(opts_for(sock_dir), stats, "test")
        connecting = asyncio.ensure_future(bus.connect())
        await asyncio.sleep(0.3)
        assert not connecting.done()
        publisher = Publisher(sock_dir)
        await publisher.start()
        await asyncio.wait_for(connecting, 5)
        assert stats.bus_connects == 1
        bus.close()
        await publisher.stop()

    asyncio.run(scenario())


def test_close_ends_a_waiting_recv_batch(sock_dir: Path) -> None:
    async def scenario() -> None:
        publisher, bus, _stats = await start_pair(sock_dir)
        waiting = asyncio.ensure_future(bus.recv_batch())
        await asyncio.sleep(0.05)
        bus.close()
        assert await asyncio.wait_for(waiting, 5) == []
        await publisher.stop()

    asyncio.run(scenario())


def test_close_ends_a_waiting_connect(sock_dir: Path) -> None:
    async def scenario() -> None:
        stats = Stats()
        bus = MasterBus(opts_for(sock_dir), stats, "test")
        connecting = asyncio.ensure_future(bus.connect())
        await asyncio.sleep(0.2)
        closed_at = time.monotonic()
        bus.close()
        await asyncio.wait_for(connecting, 5)
        assert time.monotonic() - closed_at < 1
        assert await bus.recv_batch() == []
        assert stats.bus_connects == 0

    asyncio.run(scenario())
