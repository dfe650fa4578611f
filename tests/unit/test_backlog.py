"""Order and accounting of the memory buffer in front of the disk spool."""

from __future__ import annotations

from pathlib import Path

import pytest

from salt_nats.backlog import Backlog
from salt_nats.buffer import BufferedEvent, EventBuffer
from salt_nats.spool import Spool
from salt_nats.status import Stats


def event(n: int, size: int = 10) -> BufferedEvent:
    return BufferedEvent(f"t/{n}\n\n".encode() + b"x" * size, f"id-{n}", 0.0)


class Drops:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, int]] = []

    def __call__(self, reason: str, dropped: BufferedEvent | None, count: int) -> None:
        self.calls.append((reason, dropped.msg_id if dropped else None, count))


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool", max_bytes=1024**2, fsync_interval=None)
    spool.open()
    yield spool
    spool.close()


def drain(backlog: Backlog) -> list[str]:
    ids = []
    while (item := backlog.next()) is not None:
        ids.append(item.msg_id)
        backlog.done(item)
    return ids


def test_memory_only_keeps_order() -> None:
    backlog = Backlog(EventBuffer(10, 10_000), None, Stats(), Drops())
    for n in range(5):
        backlog.add(event(n), connected=True)

    assert drain(backlog) == [f"id-{n}" for n in range(5)]


def test_disconnected_events_go_to_spool(spool: Spool) -> None:
    stats = Stats()
    backlog = Backlog(EventBuffer(10, 10_000), spool, stats, Drops())
    backlog.add(event(0), connected=True)
    backlog.add(event(1), connected=False)

    assert len(backlog.buffer) == 1
    assert len(spool) == 1
    assert stats.spooled == 1


def test_order_memory_then_spool_then_new(spool: Spool) -> None:
    backlog = Backlog(EventBuffer(2, 10_000), spool, Stats(), Drops())
    for n in range(6):  # memory takes 0 and 1, the rest overflow to the spool
        backlog.add(event(n), connected=True)
    first = backlog.next()
    backlog.done(first)
    backlog.add(event(6), connected=True)  # the spool has unread records: goes behind

    assert first.msg_id == "id-0"
    assert drain(backlog) == [f"id-{n}" for n in range(1, 7)]


def test_replayed_events_are_committed(spool: Spool, tmp_path: Path) -> None:
    stats = Stats()
    backlog = Backlog(EventBuffer(10, 10_000), spool, stats, Drops())
    for n in range(3):
        backlog.add(event(n), connected=False)
    drain(backlog)
    spool.flush()

    assert stats.replayed == 3
    assert len(spool) == 0


def test_undelivered_spooled_events_replay_after_reopen(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory, max_bytes=1024**2, fsync_interval=None)
    spool.open()
    backlog = Backlog(EventBuffer(10, 10_000), spool, Stats(), Drops())
    for n in range(3):
        backlog.add(event(n), connected=False)
    taken = backlog.next()  # read from the spool but never delivered
    spool.close()

    reopened = Spool(directory, max_bytes=1024**2, fsync_interval=None)
    reopened.open()
    replay = Backlog(EventBuffer(10, 10_000), reopened, Stats(), Drops())

    assert taken.position is not None
    assert drain(replay) == ["id-0", "id-1", "id-2"]
    reopened.close()


def test_spill_saves_memory_events_only(spool: Spool) -> None:
    backlog = Backlog(EventBuffer(10, 10_000), spool, Stats(), Drops())
    backlog.add(event(0), connected=False)
    from_spool = backlog.next()
    memory_event = event(1)

    saved = backlog.spill([from_spool, memory_event])

    assert saved == 1
    assert len(spool) == 2


def test_spill_without_spool_saves_nothing() -> None:
    backlog = Backlog(EventBuffer(10, 10_000), None, Stats(), Drops())

    assert backlog.spill([event(0)]) == 0


def test_refill_respects_event_limit(spool: Spool) -> None:
    backlog = Backlog(EventBuffer(3, 10_000), spool, Stats(), Drops())
    for n in range(10):
        backlog.add(event(n), connected=False)
    backlog.next()

    assert len(backlog.buffer) == 2


def test_refill_may_pass_byte_limit_by_one_frame(spool: Spool) -> None:
    backlog = Backlog(EventBuffer(100, 25), spool, Stats(), Drops())
    for n in range(5):
        backlog.add(event(n, size=20), connected=False)
    backlog.next()

    assert len(backlog.buffer) == 0
    assert drain(backlog) == [f"id-{n}" for n in range(1, 5)]


def test_discard_commits_spooled_event(spool: Spool) -> None:
    backlog = Backlog(EventBuffer(10, 10_000), spool, Stats(), Drops())
    backlog.add(event(0), connected=False)
    taken = backlog.next()
    backlog.discard(taken)
    spool.flush()

    assert len(spool) == 0


def test_spool_drop_newest_reports_event(tmp_path: Path) -> None:
    small = Spool(tmp_path / "small", max_bytes=200, when_full="drop_newest", fsync_interval=None)
    small.open()
    drops = Drops()
    backlog = Backlog(EventBuffer(10, 10_000), small, Stats(), drops)
    for n in range(10):
        backlog.add(event(n, size=40), connected=False)
    small.close()

    assert drops.calls
    assert all(reason == "spool_full" and count == 1 for reason, _, count in drops.calls)


def test_memory_full_without_spool_drops_oldest() -> None:
    drops = Drops()
    backlog = Backlog(EventBuffer(2, 10_000), None, Stats(), drops)
    for n in range(3):
        backlog.add(event(n), connected=True)

    assert drops.calls == [("buffer_full", "id-0", 1)]
    assert drain(backlog) == ["id-1", "id-2"]
