"""Events waiting for NATS: the memory buffer in front of the optional disk spool.

Order: events go to memory while NATS is connected and memory has room. Once NATS
is unreachable or memory is full, they go to the spool, and while the spool contains
unread records every new event goes there too, behind them. The publisher takes
from memory first and refills memory from the spool, so events leave in the order
they arrived, except for events put back after a failed publish, which go to the
head of memory.

An event read from the spool carries its spool position; the spool commits it only
when the forwarder reports it delivered (:meth:`Backlog.done`) or dropped
(:meth:`Backlog.discard`), so a killed engine replays what it had not delivered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from salt_nats.buffer import BufferedEvent, EventBuffer
from salt_nats.spool import Spool
from salt_nats.status import DROP_BUFFER_FULL, DROP_SPOOL_FULL, Stats

log = logging.getLogger(__name__)

# Records moved from the spool to memory at a time.
_REFILL_BATCH = 256

# (reason, the dropped event or None for records the spool dropped, how many)
DropCallback = Callable[[str, BufferedEvent | None, int], None]


class Backlog:
    """The events read from the bus and not yet delivered, in memory and on disk."""

    def __init__(
        self, buffer: EventBuffer, spool: Spool | None, stats: Stats, on_drop: DropCallback
    ) -> None:
        self.buffer = buffer
        self.spool = spool
        self.stats = stats
        self.on_drop = on_drop

    def __len__(self) -> int:
        """Events waiting in memory and in the spool."""
        return len(self.buffer) + self.spool_records

    @property
    def spool_records(self) -> int:
        """Records in the spool that are not committed yet."""
        return len(self.spool) if self.spool is not None else 0

    def has_pending(self) -> bool:
        """Return True when :meth:`next` may return an event."""
        return bool(len(self.buffer)) or (self.spool is not None and self.spool.has_unread)

    def add(self, event: BufferedEvent, connected: bool) -> None:
        """Take a new event from the bus."""
        spool = self.spool
        if spool is not None and (
            spool.has_unread or not connected or not self.buffer.has_room(len(event.frame))
        ):
            self._append_to_spool(event)
            return
        for dropped in self.buffer.put(event):
            self._discard_dropped(dropped, DROP_BUFFER_FULL)

    def next(self) -> BufferedEvent | None:
        """Remove and return the oldest waiting event, or None."""
        if not len(self.buffer) and self.spool is not None and self.spool.has_unread:
            self._refill()
        if not len(self.buffer):
            return None
        return self.buffer.pop()

    def put_back(self, event: BufferedEvent) -> None:
        """Return an event whose publish failed to the head of memory."""
        for dropped in self.buffer.put_back(event):
            self._discard_dropped(dropped, DROP_BUFFER_FULL)

    def done(self, event: BufferedEvent) -> None:
        """Record that an event was delivered (published in core mode, acknowledged in
        JetStream mode)."""
        if event.position is not None and self.spool is not None:
            self.spool.ack(event.position)
            self.stats.replayed += 1

    def discard(self, event: BufferedEvent) -> None:
        """Record that an event taken with :meth:`next` was dropped; the caller counts it."""
        if event.position is not None and self.spool is not None:
            self.spool.ack(event.position)

    def spill(self, events: list[BufferedEvent]) -> int:
        """Move undelivered events to the spool at shutdown; return how many were saved.

        Events that came from the spool stay there uncommitted and are not copied.
        Without a spool nothing is saved.
        """
        if self.spool is None:
            return 0
        saved = 0
        for event in events:
            if event.position is None:
                self._append_to_spool(event)
                saved += 1
        return saved

    def drain_memory(self) -> list[BufferedEvent]:
        """Remove and return every event held in memory, oldest first."""
        events = []
        while len(self.buffer):
            events.append(self.buffer.pop())
        return events

    def flush(self) -> None:
        """Hand spooled data to the OS (and fsync when its interval is due)."""
        if self.spool is not None:
            self.spool.flush()

    def close(self) -> None:
        """Flush, fsync and close the spool."""
        if self.spool is not None:
            self.spool.close()

    def _append_to_spool(self, event: BufferedEvent) -> None:
        assert self.spool is not None
        dropped = self.spool.append(event.msg_id, event.frame)
        if dropped and self.spool.when_full == "drop_newest":
            self.on_drop(DROP_SPOOL_FULL, event, 1)
            return
        self.stats.spooled += 1
        if dropped:
            self.on_drop(DROP_SPOOL_FULL, None, dropped)

    def _refill(self) -> None:
        """Move spooled records into the empty memory buffer, within its limits.

        Records are read one at a time, because a record read from the spool must
        end up in memory: dropping it there would lose it for good. So the last
        record may take memory past ``buffer_max_bytes`` by up to one frame.
        """
        assert self.spool is not None
        now = time.monotonic()
        limit = min(_REFILL_BATCH, self.buffer.max_events)
        for _ in range(limit):
            if self.buffer.nbytes >= self.buffer.max_bytes:
                break
            records = self.spool.read(1)
            if not records:
                break
            record = records[0]
            self.buffer.put(
                BufferedEvent(record.frame, record.msg_id, now, record.position), force=True
            )

    def _discard_dropped(self, event: BufferedEvent, reason: str) -> None:
        self.discard(event)
        self.on_drop(reason, event, 1)
