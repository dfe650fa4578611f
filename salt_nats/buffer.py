"""Bounded in-memory buffer of bus frames waiting for NATS."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class BufferedEvent:
    """A raw bus frame with the message id it keeps across retries."""

    frame: bytes
    msg_id: str
    received_at: float  # time.monotonic() when read from the bus or the spool
    position: int | None = None  # spool position, for events replayed from the spool


class EventBuffer:
    """FIFO bounded by event count and by frame bytes.

    ``put`` never blocks: when a limit is reached it drops one event per the
    ``when_full`` policy and returns it, so the caller can count and log the drop.
    """

    def __init__(self, max_events: int, max_bytes: int, when_full: str = "drop_oldest") -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("an event buffer needs room for at least one event and one byte")
        if when_full not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"unknown buffer_full policy {when_full!r}")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.when_full = when_full
        self._events: deque[BufferedEvent] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._events)

    @property
    def nbytes(self) -> int:
        """Bytes of the frames held now."""
        return self._bytes

    def _fits(self, size: int) -> bool:
        return len(self._events) < self.max_events and self._bytes + size <= self.max_bytes

    def has_room(self, size: int) -> bool:
        """Return True when an event of ``size`` bytes fits without a drop."""
        return self._fits(size)

    def put(self, event: BufferedEvent, force: bool = False) -> list[BufferedEvent]:
        """Append an event; return the events dropped to respect the limits.

        With ``force`` the event is appended past the limits and nothing is dropped.
        """
        size = len(event.frame)
        if force:
            self._events.append(event)
            self._bytes += size
            return []
        if size > self.max_bytes:
            return [event]
        dropped: list[BufferedEvent] = []
        while not self._fits(size):
            if self.when_full == "drop_newest":
                return [event]
            dropped.append(self._pop_oldest())
        self._events.append(event)
        self._bytes += size
        return dropped

    def put_back(self, event: BufferedEvent) -> list[BufferedEvent]:
        """Return an event that failed to publish to the head of the buffer.

        If new events filled the buffer meanwhile, the newest ones make room,
        because the returned event is older than all of them.
        """
        size = len(event.frame)
        if size > self.max_bytes:
            return [event]
        dropped: list[BufferedEvent] = []
        while not self._fits(size):
            newest = self._events.pop()
            self._bytes -= len(newest.frame)
            dropped.append(newest)
        self._events.appendleft(event)
        self._bytes += size
        return dropped

    def pop(self) -> BufferedEvent:
        """Remove and return the oldest event; raise IndexError when empty."""
        return self._pop_oldest()

    def _pop_oldest(self) -> BufferedEvent:
        event = self._events.popleft()
        self._bytes -= len(event.frame)
        return event

    def oldest_age(self, now: float) -> float:
        """Seconds the oldest buffered event has waited, or 0.0 when empty."""
        if not self._events:
            return 0.0
        return max(0.0, now - self._events[0].received_at)
