"""Tests for counters and rate-limited logging in salt_nats.status."""

from __future__ import annotations

import json
import logging
import types

import pytest

from salt_nats import status
from salt_nats.status import RateLimitedLog, Stats

LOGGER_NAME = "tests.salt_nats.drops"


class FakeClock:
    """A clock the test moves by hand, for both ``time.monotonic`` and ``time.time``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(status, "time", types.SimpleNamespace(monotonic=fake, time=fake))
    return fake


@pytest.fixture
def drop_log(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> RateLimitedLog:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    return RateLimitedLog(logging.getLogger(LOGGER_NAME), interval=60.0)


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME]


# RateLimitedLog


def test_first_note_logged(drop_log: RateLimitedLog, caplog: pytest.LogCaptureFixture) -> None:
    drop_log.note("buffer_full", "dropped %d events from %s", 1, "prod-bus")

    assert messages(caplog) == ["dropped 1 events from prod-bus"]


def test_note_level(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    drop_log = RateLimitedLog(logging.getLogger(LOGGER_NAME), 60.0, level=logging.ERROR)
    drop_log.note("oversize", "dropped")

    assert [r.levelno for r in caplog.records] == [logging.ERROR]


def test_default_level_warning(drop_log: RateLimitedLog, caplog: pytest.LogCaptureFixture) -> None:
    drop_log.note("oversize", "dropped")

    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_repeats_suppressed(
    clock: FakeClock, drop_log: RateLimitedLog, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(5):
        drop_log.note("buffer_full", "dropped")
        clock.advance(10)

    assert messages(caplog) == ["dropped"]


def test_kinds_independent(drop_log: RateLimitedLog, caplog: pytest.LogCaptureFixture) -> None:
    drop_log.note("buffer_full", "buffer full")
    drop_log.note("oversize", "too large")

    assert messages(caplog) == ["buffer full", "too large"]


def test_flush_before_interval_silent(
    clock: FakeClock, drop_log: RateLimitedLog, caplog: pytest.LogCaptureFixture
) -> None:
    drop_log.note("buffer_full", "dropped")
    drop_log.note("buffer_full", "dropped")
    caplog.clear()
    clock.advance(59)
    drop_log.flush()

    assert messages(caplog) == []


def test_flush_after_interval_logs_sum(
    clock: FakeClock, drop_log: RateLimitedLog, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(5):
        drop_log.note("buffer_full", "dropped")
    caplog.clear()
    clock.advance(60)
    drop_log.flush()

    assert messages(caplog) == ["salt-nats: 4 more of 'buffer_full' in the last 60.0 s"]


def test_flush_force_logs_at_once(
    drop_log: RateLimitedLog, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        drop_log.note("shutdown", "dropped")
    caplog.clear()
    drop_log.flush(force=True)

    assert messages(caplog) == ["salt-nats: 2 more of 'shutdown' in the last 60.0 s"]


def test_flush_clears_sum(drop_log: RateLimitedLog, caplog: pytest.LogCaptureFixture) -> None:
    drop_log.note("shutdown", "dropped")
    drop_log.note("shutdown", "dropped")
    drop_log.flush(force=True)
    caplog.clear()
    drop_log.flush(force=True)

    assert messages(caplog) == []


def test_flush_nothing_pending(drop_log: RateLimitedLog, caplog: pytest.LogCaptureFixture) -> None:
    drop_log.note("shutdown", "dropped")
    caplog.clear()
    drop_log.flush(force=True)

    assert messages(caplog) == []


def test_flush_restarts_interval(
    clock: FakeClock, drop_log: RateLimitedLog, caplog: pytest.LogCaptureFixture
) -> None:
    drop_log.note("buffer_full", "dropped")
    drop_log.note("buffer_full", "dropped")
    clock.advance(60)
    drop_log.flush()
    caplog.clear()
    clock.advance(30)
    drop_log.note("buffer_full", "dropped")

    assert messages(caplog) == []


def test_note_after_interval_reports_sum(
    clock: FakeClock, drop_log: RateLimitedLog, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(4):
        drop_log.note("buffer_full", "dropped %s", "event")
    caplog.clear()
    clock.advance(60)
    drop_log.note("buffer_full", "dropped %s", "event")

    assert messages(caplog) == ["dropped event (3 more since the last report)"]


def test_note_after_quiet_interval_plain(
    clock: FakeClock, drop_log: RateLimitedLog, caplog: pytest.LogCaptureFixture
) -> None:
    drop_log.note("buffer_full", "dropped")
    caplog.clear()
    clock.advance(61)
    drop_log.note("buffer_full", "dropped")

    assert messages(caplog) == ["dropped"]


def test_zero_interval_logs_every_note(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    drop_log = RateLimitedLog(logging.getLogger(LOGGER_NAME), interval=0.0)
    for _ in range(3):
        drop_log.note("oversize", "dropped")

    assert messages(caplog) == ["dropped"] * 3


# Stats

SNAPSHOT_KEYS = {
    "uptime",
    "received",
    "filtered",
    "published",
    "truncated",
    "spooled",
    "replayed",
    "dropped",
    "dropped_total",
    "bus_connects",
    "bus_disconnects",
    "nats_connects",
    "nats_disconnects",
    "nats_reconnects",
    "nats_errors",
    "acknowledged",
    "retried",
    "duplicates",
    "last_error",
    "last_error_time",
}


def test_snapshot_keys(clock: FakeClock) -> None:
    assert set(Stats().snapshot()) == SNAPSHOT_KEYS


def test_snapshot_fresh_counters(clock: FakeClock) -> None:
    snapshot = Stats().snapshot()

    assert snapshot["received"] == 0
    assert snapshot["dropped"] == {}
    assert snapshot["dropped_total"] == 0
    assert snapshot["last_error"] is None
    assert snapshot["last_error_time"] is None


def test_dropped_total_sums_reasons(clock: FakeClock) -> None:
    stats = Stats()
    stats.dropped[status.DROP_BUFFER_FULL] += 3
    stats.dropped[status.DROP_OVERSIZE] += 2
    stats.dropped[status.DROP_INVALID_FRAME] += 1

    assert stats.snapshot()["dropped_total"] == 6


def test_dropped_by_reason(clock: FakeClock) -> None:
    stats = Stats()
    stats.dropped[status.DROP_BUFFER_FULL] += 3
    stats.dropped[status.DROP_SHUTDOWN] += 1

    assert stats.snapshot()["dropped"] == {"buffer_full": 3, "shutdown": 1}


def test_snapshot_is_copy(clock: FakeClock) -> None:
    stats = Stats()
    snapshot = stats.snapshot()
    snapshot["dropped"]["buffer_full"] = 99

    assert stats.dropped["buffer_full"] == 0


def test_snapshot_uptime(clock: FakeClock) -> None:
    stats = Stats(started_at=clock.now)
    clock.advance(12.5)

    assert stats.snapshot()["uptime"] == 12.5


def test_record_error(clock: FakeClock) -> None:
    stats = Stats()
    clock.advance(3)
    stats.record_error("publish failed: timeout")
    snapshot = stats.snapshot()

    assert snapshot["last_error"] == "publish failed: timeout"
    assert snapshot["last_error_time"] == 1003.0


def test_snapshot_counters(clock: FakeClock) -> None:
    stats = Stats(received=10, filtered=2, published=7, truncated=1, nats_reconnects=3)
    snapshot = stats.snapshot()

    assert snapshot["received"] == 10
    assert snapshot["filtered"] == 2
    assert snapshot["published"] == 7
    assert snapshot["truncated"] == 1
    assert snapshot["nats_reconnects"] == 3


def test_snapshot_json_serializable(clock: FakeClock) -> None:
    stats = Stats()
    stats.dropped[status.DROP_ENCODE] += 1
    stats.record_error("dropped event (json)")

    assert json.loads(json.dumps(stats.snapshot())) == stats.snapshot()
