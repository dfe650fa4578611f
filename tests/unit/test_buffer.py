"""Tests for the bounded event buffer in salt_nats.buffer."""

from __future__ import annotations

from collections import deque
from itertools import count

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from salt_nats.buffer import BufferedEvent, EventBuffer

_ids = count()


def event(size: int = 10, received_at: float = 0.0) -> BufferedEvent:
    """Build an event whose frame is ``size`` bytes, with a unique message id."""
    return BufferedEvent(frame=b"x" * size, msg_id=f"msg-{next(_ids)}", received_at=received_at)


def ids(events: list[BufferedEvent]) -> list[str]:
    return [e.msg_id for e in events]


def drain(buffer: EventBuffer) -> list[BufferedEvent]:
    events = []
    while len(buffer):
        events.append(buffer.pop())
    return events


# Limits and policies


def test_put_pop_fifo() -> None:
    buffer = EventBuffer(10, 1000)
    events = [event() for _ in range(3)]
    for e in events:
        buffer.put(e)

    assert ids(drain(buffer)) == ids(events)


def test_put_returns_no_drops() -> None:
    assert EventBuffer(10, 1000).put(event()) == []


def test_count_limit_drop_oldest() -> None:
    buffer = EventBuffer(3, 1000, "drop_oldest")
    events = [event() for _ in range(5)]
    dropped = [d for e in events for d in buffer.put(e)]

    assert ids(dropped) == ids(events[:2])
    assert ids(drain(buffer)) == ids(events[2:])


def test_count_limit_drop_newest() -> None:
    buffer = EventBuffer(3, 1000, "drop_newest")
    events = [event() for _ in range(5)]
    dropped = [d for e in events for d in buffer.put(e)]

    assert ids(dropped) == ids(events[3:])
    assert ids(drain(buffer)) == ids(events[:3])


def test_bytes_limit_drop_oldest() -> None:
    buffer = EventBuffer(100, 100, "drop_oldest")
    first, second, third = event(40), event(40), event(40)
    buffer.put(first)
    buffer.put(second)

    assert ids(buffer.put(third)) == [first.msg_id]
    assert buffer.nbytes == 80


def test_bytes_limit_drops_several() -> None:
    buffer = EventBuffer(100, 100, "drop_oldest")
    small = [event(30) for _ in range(3)]
    for e in small:
        buffer.put(e)
    large = event(90)

    assert ids(buffer.put(large)) == ids(small)
    assert ids(drain(buffer)) == [large.msg_id]


def test_bytes_limit_drop_newest() -> None:
    buffer = EventBuffer(100, 100, "drop_newest")
    first, second, third = event(40), event(40), event(40)
    buffer.put(first)
    buffer.put(second)

    assert ids(buffer.put(third)) == [third.msg_id]
    assert ids(drain(buffer)) == [first.msg_id, second.msg_id]


def test_exact_byte_fit() -> None:
    buffer = EventBuffer(10, 100)
    buffer.put(event(60))

    assert buffer.put(event(40)) == []
    assert buffer.nbytes == 100


@pytest.mark.parametrize("when_full", ["drop_oldest", "drop_newest"])
def test_event_over_max_bytes_dropped(when_full: str) -> None:
    buffer = EventBuffer(10, 100, when_full)
    kept = event(50)
    buffer.put(kept)
    huge = event(101)

    assert ids(buffer.put(huge)) == [huge.msg_id]
    assert ids(drain(buffer)) == [kept.msg_id]


def test_unknown_policy_rejected() -> None:
    with pytest.raises(ValueError, match="block"):
        EventBuffer(10, 100, "block")


def test_pop_empty_raises() -> None:
    with pytest.raises(IndexError):
        EventBuffer(10, 100).pop()


# put_back


def test_put_back_at_head() -> None:
    buffer = EventBuffer(10, 1000)
    newer = event()
    buffer.put(newer)
    retried = event()
    buffer.put_back(retried)

    assert ids(drain(buffer)) == [retried.msg_id, newer.msg_id]


def test_put_back_full_count_evicts_newest() -> None:
    buffer = EventBuffer(3, 1000, "drop_oldest")
    events = [event() for _ in range(3)]
    for e in events:
        buffer.put(e)
    retried = event()

    assert ids(buffer.put_back(retried)) == [events[2].msg_id]
    assert ids(drain(buffer)) == [retried.msg_id, events[0].msg_id, events[1].msg_id]


def test_put_back_full_bytes_evicts_newest() -> None:
    buffer = EventBuffer(10, 100, "drop_newest")
    events = [event(30) for _ in range(3)]
    for e in events:
        buffer.put(e)
    retried = event(60)

    assert ids(buffer.put_back(retried)) == [events[2].msg_id, events[1].msg_id]
    assert ids(drain(buffer)) == [retried.msg_id, events[0].msg_id]


def test_put_back_over_max_bytes_dropped() -> None:
    buffer = EventBuffer(10, 100)
    kept = event(50)
    buffer.put(kept)
    huge = event(101)

    assert ids(buffer.put_back(huge)) == [huge.msg_id]
    assert ids(drain(buffer)) == [kept.msg_id]


def test_put_back_counts_bytes() -> None:
    buffer = EventBuffer(10, 1000)
    buffer.put(event(10))
    buffer.put_back(event(25))

    assert buffer.nbytes == 35


# oldest_age


def test_oldest_age_empty() -> None:
    assert EventBuffer(10, 1000).oldest_age(100.0) == 0.0


def test_oldest_age_of_head() -> None:
    buffer = EventBuffer(10, 1000)
    buffer.put(event(received_at=10.0))
    buffer.put(event(received_at=50.0))

    assert buffer.oldest_age(100.0) == 90.0


def test_oldest_age_after_put_back() -> None:
    buffer = EventBuffer(10, 1000)
    buffer.put(event(received_at=50.0))
    buffer.put_back(event(received_at=5.0))

    assert buffer.oldest_age(100.0) == 95.0


def test_oldest_age_never_negative() -> None:
    buffer = EventBuffer(10, 1000)
    buffer.put(event(received_at=100.0))

    assert buffer.oldest_age(99.0) == 0.0


def test_oldest_age_after_drop() -> None:
    buffer = EventBuffer(1, 1000, "drop_oldest")
    buffer.put(event(received_at=10.0))
    buffer.put(event(received_at=60.0))

    assert buffer.oldest_age(100.0) == 40.0


# Model-based check of every operation sequence


class BufferModel(RuleBasedStateMachine):
    """Compare EventBuffer with a plain deque that applies the documented rules."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer: EventBuffer | None = None
        self.model: deque[BufferedEvent] = deque()

    @precondition(lambda self: self.buffer is None)
    @rule(
        max_events=st.integers(1, 6),
        max_bytes=st.integers(1, 200),
        when_full=st.sampled_from(["drop_oldest", "drop_newest"]),
    )
    def create(self, max_events: int, max_bytes: int, when_full: str) -> None:
        self.buffer = EventBuffer(max_events, max_bytes, when_full)

    def fits(self, size: int) -> bool:
        assert self.buffer is not None
        used = sum(len(e.frame) for e in self.model)
        return len(self.model) < self.buffer.max_events and used + size <= self.buffer.max_bytes

    @precondition(lambda self: self.buffer is not None)
    @rule(size=st.integers(0, 220))
    def put(self, size: int) -> None:
        assert self.buffer is not None
        new = event(size)
        expected: list[BufferedEvent] = []
        too_large = size > self.buffer.max_bytes
        if too_large or (self.buffer.when_full == "drop_newest" and not self.fits(size)):
            expected = [new]
        else:
            while not self.fits(size):
                expected.append(self.model.popleft())
            self.model.append(new)

        assert ids(self.buffer.put(new)) == ids(expected)

    @precondition(lambda self: self.buffer is not None)
    @rule(size=st.integers(0, 220))
    def put_back(self, size: int) -> None:
        assert self.buffer is not None
        retried = event(size)
        expected: list[BufferedEvent] = []
        if size > self.buffer.max_bytes:
            expected = [retried]
        else:
            while not self.fits(size):
                expected.append(self.model.pop())
            self.model.appendleft(retried)

        assert ids(self.buffer.put_back(retried)) == ids(expected)

    @precondition(lambda self: self.buffer is not None and len(self.model) > 0)
    @rule()
    def pop(self) -> None:
        assert self.buffer is not None
        assert self.buffer.pop().msg_id == self.model.popleft().msg_id

    @invariant()
    def nbytes_exact(self) -> None:
        if self.buffer is not None:
            assert self.buffer.nbytes == sum(len(e.frame) for e in self.model)

    @invariant()
    def same_events(self) -> None:
        if self.buffer is not None:
            assert ids(list(self.buffer._events)) == ids(list(self.model))

    @invariant()
    def within_limits(self) -> None:
        if self.buffer is not None:
            assert len(self.buffer) <= self.buffer.max_events
            assert self.buffer.nbytes <= self.buffer.max_bytes


BufferModel.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_buffer_matches_model = BufferModel.TestCase
