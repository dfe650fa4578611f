"""Read what reached a JetStream stream, for exact counts after faults.

A stream captures every message the server accepts, whether or not a test's
subscriber was connected at that moment, so tests of outages count from it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats
from nats.js.api import StorageType, StreamConfig


async def _with_js(url: str, action: Any) -> Any:
    client = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=2)
    try:
        return await action(client.jetstream())
    finally:
        await client.close()


def create_stream(url: str, name: str, subjects: list[str]) -> None:
    """Create a file-backed stream that survives a server restart."""

    async def action(js: Any) -> None:
        await js.add_stream(StreamConfig(name=name, subjects=subjects, storage=StorageType.FILE))

    asyncio.run(_with_js(url, action))


def read_stream(url: str, name: str) -> list[Any]:
    """Return every message in the stream, in sequence order (``RawStreamMsg`` objects)."""

    async def action(js: Any) -> list[Any]:
        info = await js.stream_info(name)
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if info.state.messages == 0:
                break
            messages.append(await js.get_msg(name, seq))
        return messages

    return asyncio.run(_with_js(url, action))
