"""Tests for the on-disk spool in salt_nats.spool, on real files under tmp_path."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from salt_nats.spool import CURSOR_FILE, RECORD_OVERHEAD, Spool, SpooledEvent

LOGGER = "salt_nats.spool"
FRAME_FILL = 100


def msg_id(number: int) -> str:
    return f"msg-{number:05d}"


def frame(number: int) -> bytes:
    return f"salt/test/{number:05d}\n\n".encode() + bytes([number % 251]) * FRAME_FILL


# Every record built from msg_id() and frame() has this size on disk.
RECORD_SIZE = RECORD_OVERHEAD + len(msg_id(0)) + len(frame(0))
BIG = 1 << 30


def open_spool(directory: Path, **options: object) -> Spool:
    options.setdefault("max_bytes", BIG)
    spool = Spool(directory, **options)  # type: ignore[arg-type]
    spool.open()
    return spool


def append_range(spool: Spool, numbers: range) -> int:
    """Append records for ``numbers`` and return the sum of reported drops."""
    return sum(spool.append(msg_id(n), frame(n)) for n in numbers)


def read_all(spool: Spool) -> list[SpooledEvent]:
    return spool.read(1_000_000)


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno == logging.WARNING
    ]


# -- order, reopen, acks --------------------------------------------------------------


def test_order_across_segments(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=3 * RECORD_SIZE)
    append_range(spool, range(50))

    events = read_all(spool)

    assert len(segment_files(tmp_path)) == 17
    assert [e.msg_id for e in events] == [msg_id(n) for n in range(50)]
    assert [e.frame for e in events] == [frame(n) for n in range(50)]
    assert [e.position for e in events] == list(range(1, 51))


def test_read_in_batches(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=3 * RECORD_SIZE)
    append_range(spool, range(20))

    batches = [spool.read(7) for _ in range(4)]

    assert [len(b) for b in batches] == [7, 7, 6, 0]
    assert [e.msg_id for b in batches for e in b] == [msg_id(n) for n in range(20)]


def test_unflushed_records_readable(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(3))

    assert [e.msg_id for e in spool.read(10)] == [msg_id(n) for n in range(3)]


def test_reopen_returns_uncommitted(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=4 * RECORD_SIZE)
    append_range(spool, range(10))
    for event in spool.read(6):
        spool.ack(event.position)
    spool.close()

    spool = open_spool(tmp_path, segment_bytes=4 * RECORD_SIZE)
    assert len(spool) == 4
    append_range(spool, range(10, 12))
    events = read_all(spool)

    assert [e.msg_id for e in events] == [msg_id(n) for n in range(6, 12)]
    assert [e.position for e in events] == list(range(7, 13))


def test_out_of_order_acks(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(5))
    read_all(spool)

    for position in (2, 4, 5):
        spool.ack(position)
    assert len(spool) == 5

    spool.ack(1)
    assert len(spool) == 3

    spool.ack(3)
    assert len(spool) == 0


def test_acks_past_gap_not_persisted(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(5))
    read_all(spool)
    for position in (2, 4, 5, 1):
        spool.ack(position)
    spool.close()

    spool = open_spool(tmp_path)

    assert [e.position for e in read_all(spool)] == [3, 4, 5]


def test_acked_segments_deleted(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, segment_bytes=3 * RECORD_SIZE)
    append_range(spool, range(9))
    events = read_all(spool)

    for event in events[:4]:
        spool.ack(event.position)
    assert len(segment_files(tmp_path)) == 2

    for event in events[4:]:
        spool.ack(event.position)
    assert segment_files(tmp_path) == []
    assert len(spool) == 0
    assert spool.nbytes == 0


def test_positions_continue_after_commit(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(3))
    for event in read_all(spool):
        spool.ack(event.position)
    spool.close()

    spool = open_spool(tmp_path)
    append_range(spool, range(3, 4))

    assert [e.position for e in read_all(spool)] == [4]


def test_rewind_redelivers(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(6))
    first = spool.read(4)
    spool.ack(first[0].position)

    spool.rewind()

    assert [e.position for e in read_all(spool)] == [2, 3, 4, 5, 6]


def test_late_ack_after_rewind(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(4))
    read_all(spool)
    spool.rewind()

    spool.ack(1)
    spool.ack(2)

    assert len(spool) == 2
    assert [e.position for e in read_all(spool)] == [3, 4]


def test_ack_unknown_position(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(2))

    with pytest.raises(ValueError, match="position 3"):
        spool.ack(3)


def test_ack_committed_ignored(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(2))
    spool.read(1)
    spool.ack(1)

    spool.ack(1)

    assert len(spool) == 1


# -- size policy ----------------------------------------------------------------------


def test_drop_oldest_keeps_newest(tmp_path: Path) -> None:
    spool = open_spool(
        tmp_path, max_bytes=20 * RECORD_SIZE, segment_bytes=2 * RECORD_SIZE, fsync_interval=None
    )

    reported = append_range(spool, range(100))
    remaining = len(spool)
    events = read_all(spool)

    assert reported == 100 - remaining
    assert spool.dropped == reported
    assert [e.msg_id for e in events] == [msg_id(n) for n in range(100 - remaining, 100)]
    assert spool.nbytes <= spool.max_bytes


def test_drop_oldest_skips_acked(tmp_path: Path) -> None:
    spool = open_spool(
        tmp_path, max_bytes=16 * RECORD_SIZE, segment_bytes=2 * RECORD_SIZE, fsync_interval=None
    )
    append_range(spool, range(16))
    spool.read(2)
    spool.ack(2)

    reported = append_range(spool, range(16, 17))

    assert reported == 1
    assert len(spool) == 15
    assert [e.position for e in read_all(spool)] == list(range(3, 18))


def test_late_ack_after_drop(tmp_path: Path) -> None:
    spool = open_spool(
        tmp_path, max_bytes=4 * RECORD_SIZE, segment_bytes=RECORD_SIZE, fsync_interval=None
    )
    append_range(spool, range(4))
    events = spool.read(2)
    append_range(spool, range(4, 6))

    for event in events:
        spool.ack(event.position)

    assert len(spool) == 4
    assert [e.position for e in read_all(spool)] == [3, 4, 5, 6]


def test_drop_newest_keeps_oldest(tmp_path: Path) -> None:
    spool = open_spool(
        tmp_path,
        max_bytes=20 * RECORD_SIZE,
        when_full="drop_newest",
        segment_bytes=2 * RECORD_SIZE,
        fsync_interval=None,
    )

    reported = append_range(spool, range(100))
    events = read_all(spool)

    assert len(spool) == 20
    assert reported == 80
    assert spool.dropped == 80
    assert [e.msg_id for e in events] == [msg_id(n) for n in range(20)]


def test_drop_newest_room_after_ack(tmp_path: Path) -> None:
    spool = open_spool(
        tmp_path, max_bytes=4 * RECORD_SIZE, when_full="drop_newest", segment_bytes=RECORD_SIZE
    )
    append_range(spool, range(4))
    assert append_range(spool, range(4, 5)) == 1

    spool.ack(spool.read(1)[0].position)

    assert append_range(spool, range(4, 5)) == 0


@pytest.mark.parametrize("when_full", ["drop_oldest", "drop_newest"])
def test_oversize_record_rejected(tmp_path: Path, when_full: str) -> None:
    spool = open_spool(tmp_path, max_bytes=RECORD_SIZE - 1, when_full=when_full)

    assert spool.append(msg_id(0), frame(0)) == 1
    assert len(spool) == 0
    assert spool.dropped == 1


def test_record_of_max_bytes_fits(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_bytes=RECORD_SIZE)

    assert spool.append(msg_id(0), frame(0)) == 0
    assert spool.append(msg_id(1), frame(1)) == 1
    assert [e.msg_id for e in read_all(spool)] == [msg_id(1)]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=120),
    max_bytes=st.integers(min_value=RECORD_SIZE, max_value=6000),
    segment_bytes=st.integers(min_value=1, max_value=2000),
    when_full=st.sampled_from(["drop_oldest", "drop_newest"]),
)
def test_size_policy_property(
    sizes: list[int], max_bytes: int, segment_bytes: int, when_full: str
) -> None:
    frames = [bytes([n % 251]) * size for n, size in enumerate(sizes)]
    with tempfile.TemporaryDirectory() as directory:
        spool = open_spool(
            Path(directory),
            max_bytes=max_bytes,
            when_full=when_full,
            segment_bytes=segment_bytes,
            fsync_interval=None,
        )
        reported = 0
        for number, data in enumerate(frames):
            reported += spool.append(msg_id(number), data)
            assert spool.nbytes <= max_bytes

        remaining = [e.msg_id for e in read_all(spool)]
        spool.close()

    assert reported == len(frames) - len(remaining)
    assert spool.dropped == reported
    if when_full == "drop_oldest":
        # A record larger than max_bytes on its own is rejected under either policy.
        fitting = [
            msg_id(n)
            for n, data in enumerate(frames)
            if RECORD_OVERHEAD + len(msg_id(n)) + len(data) <= max_bytes
        ]
        assert remaining == fitting[len(fitting) - len(remaining) :]
    else:
        stored = [msg_id(n) for n in range(len(frames))]
        assert set(remaining) <= set(stored)
        assert remaining == sorted(remaining)


# -- recovery -------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 4, 8, 9, 20, RECORD_SIZE - 1])
def test_truncated_last_record(tmp_path: Path, caplog: pytest.LogCaptureFixture, cut: int) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(5))
    spool.close()
    (segment,) = segment_files(tmp_path)
    last_start = 4 * RECORD_SIZE
    with segment.open("r+b") as file:
        file.truncate(last_start + cut)

    caplog.set_level(logging.WARNING, logger=LOGGER)
    spool = open_spool(tmp_path)
    events = read_all(spool)

    assert [e.msg_id for e in events] == [msg_id(n) for n in range(4)]
    assert spool.corrupt_records == 1
    assert segment.stat().st_size == last_start
    messages = warnings_logged(caplog)
    assert len(messages) == 1
    assert segment.name in messages[0]
    assert f"offset {last_start}" in messages[0]


def test_truncated_only_record(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(1))
    spool.close()
    (segment,) = segment_files(tmp_path)
    with segment.open("r+b") as file:
        file.truncate(RECORD_SIZE // 2)

    spool = open_spool(tmp_path, fsync_interval=0.0)
    spool.close()

    assert len(spool) == 0
    assert spool.corrupt_records == 1
    assert segment_files(tmp_path) == []


def test_truncated_tail_then_append(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(3))
    spool.close()
    (segment,) = segment_files(tmp_path)
    with segment.open("r+b") as file:
        file.truncate(2 * RECORD_SIZE + 5)

    spool = open_spool(tmp_path)
    append_range(spool, range(3, 5))
    spool.close()
    spool = open_spool(tmp_path)
    events = read_all(spool)

    assert [e.msg_id for e in events] == [msg_id(n) for n in (0, 1, 3, 4)]
    assert [e.position for e in events] == [1, 2, 4, 5]


def test_cut_at_record_boundary(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(3))
    spool.flush()

    caplog.set_level(logging.WARNING, logger=LOGGER)
    reopened = open_spool(tmp_path)

    assert len(reopened) == 3
    assert warnings_logged(caplog) == []


def test_flipped_byte_last_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(5))
    spool.close()
    (segment,) = segment_files(tmp_path)
    flip_byte(segment, 5 * RECORD_SIZE - 3)

    caplog.set_level(logging.WARNING, logger=LOGGER)
    spool = open_spool(tmp_path)
    events = read_all(spool)

    assert [e.msg_id for e in events] == [msg_id(n) for n in range(4)]
    assert spool.corrupt_records == 1
    messages = warnings_logged(caplog)
    assert len(messages) == 1
    assert "CRC32 mismatch" in messages[0]


def test_corrupt_middle_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    options = {"segment_bytes": 3 * RECORD_SIZE}
    spool = open_spool(tmp_path, **options)
    append_range(spool, range(9))
    spool.close()
    middle_segment = segment_files(tmp_path)[1]
    flip_byte(middle_segment, RECORD_SIZE + 40)  # record 5, second of positions 4-6

    caplog.set_level(logging.WARNING, logger=LOGGER)
    spool = open_spool(tmp_path, **options)
    events = read_all(spool)

    assert [e.position for e in events] == [1, 2, 3, 4, 7, 8, 9]
    assert spool.corrupt_records == 2
    assert len(spool) == 7
    messages = warnings_logged(caplog)
    assert len(messages) == 1
    assert middle_segment.name in messages[0]
    assert f"offset {RECORD_SIZE}" in messages[0]


def test_acks_commit_across_gap(tmp_path: Path) -> None:
    options = {"segment_bytes": 3 * RECORD_SIZE}
    spool = open_spool(tmp_path, **options)
    append_range(spool, range(9))
    spool.close()
    flip_byte(segment_files(tmp_path)[1], RECORD_SIZE + 40)  # position 5

    spool = open_spool(tmp_path, **options)
    for event in read_all(spool):
        spool.ack(event.position)

    assert len(spool) == 0
    assert segment_files(tmp_path) == []


def test_corrupt_record_mid_last_segment(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(6))
    spool.close()
    (segment,) = segment_files(tmp_path)
    flip_byte(segment, 2 * RECORD_SIZE)  # magic byte of position 3

    spool = open_spool(tmp_path)
    events = read_all(spool)

    assert [e.position for e in events] == [1, 2]
    assert spool.corrupt_records == 4


def test_corruption_found_by_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = open_spool(tmp_path, segment_bytes=3 * RECORD_SIZE)
    append_range(spool, range(6))
    spool.flush()
    flip_byte(segment_files(tmp_path)[1], RECORD_SIZE + 40)  # position 5

    caplog.set_level(logging.WARNING, logger=LOGGER)
    events = read_all(spool)
    for event in events:
        spool.ack(event.position)
    append_range(spool, range(6, 7))

    assert [e.position for e in events] == [1, 2, 3, 4]
    assert spool.corrupt_records == 2
    assert len(warnings_logged(caplog)) == 1
    assert [e.position for e in read_all(spool)] == [7]


def test_damaged_committed_record(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(4))
    for event in spool.read(2):
        spool.ack(event.position)
    spool.close()
    (segment,) = segment_files(tmp_path)
    flip_byte(segment, 40)  # the frame of position 1, committed

    spool = open_spool(tmp_path)

    assert spool.corrupt_records == 0
    assert [e.position for e in read_all(spool)] == [3, 4]


def test_invalid_cursor_replays(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(4))
    for event in spool.read(2):
        spool.ack(event.position)
    spool.close()
    (tmp_path / CURSOR_FILE).write_text("")

    caplog.set_level(logging.WARNING, logger=LOGGER)
    spool = open_spool(tmp_path)

    assert [e.position for e in read_all(spool)] == [1, 2, 3, 4]
    assert len(warnings_logged(caplog)) == 1


def test_cursor_file_content(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(3))
    spool.ack(spool.read(1)[0].position)
    spool.flush()

    cursor = json.loads((tmp_path / CURSOR_FILE).read_text())

    assert cursor == {"version": 1, "first_uncommitted": 2, "next_position": 4}


def test_crash_keeps_flushed(tmp_path: Path) -> None:
    crashed = open_spool(tmp_path, segment_bytes=4 * RECORD_SIZE)
    append_range(crashed, range(10))
    crashed.ack(crashed.read(3)[0].position)
    crashed.flush()

    survivor = open_spool(tmp_path, segment_bytes=4 * RECORD_SIZE)

    assert [e.msg_id for e in read_all(survivor)] == [msg_id(n) for n in range(1, 10)]


CRASH_SCRIPT = """
import os, signal, sys
from salt_nats.spool import Spool
spool = Spool(sys.argv[1], max_bytes=1 << 30)
spool.open()
for n in range(int(sys.argv[2])):
    spool.append(f"msg-{n:05d}", b"x" * 100)
spool.flush()
for n in range(int(sys.argv[2]), int(sys.argv[3])):
    spool.append(f"msg-{n:05d}", b"x" * 100)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigkill_keeps_flushed(tmp_path: Path) -> None:
    # The 20,000 unflushed records overflow the write buffer many times, so many of
    # them reach the file before the kill. Every record there must read back in order.
    result = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(tmp_path), "50", "20050"],
        timeout=60,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL

    spool = open_spool(tmp_path)
    ids = [e.msg_id for e in read_all(spool)]

    assert len(ids) >= 50
    assert ids == [msg_id(n) for n in range(len(ids))]


def test_missing_directory(tmp_path: Path) -> None:
    directory = tmp_path / "spool" / "engine"

    spool = open_spool(directory)

    assert len(spool) == 0
    assert spool.read(10) == []
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_empty_directory(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)

    assert len(spool) == 0
    assert spool.nbytes == 0
    assert spool.read(10) == []


def test_foreign_files_ignored(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a segment")
    (tmp_path / "backup.seg").write_bytes(b"\x00" * 10)

    spool = open_spool(tmp_path)

    assert len(spool) == 0


def test_empty_segment_removed(tmp_path: Path) -> None:
    (tmp_path / f"{7:020d}.seg").touch()

    spool = open_spool(tmp_path)
    append_range(spool, range(1))

    assert [e.position for e in read_all(spool)] == [1]


def test_open_logs_summary(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = open_spool(tmp_path)
    append_range(spool, range(3))
    spool.close()

    caplog.set_level(logging.INFO, logger=LOGGER)
    open_spool(tmp_path)

    assert any("opened with 3 uncommitted records" in r.getMessage() for r in caplog.records)


def test_fsync_each_flush(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, fsync_interval=0.0, segment_bytes=2 * RECORD_SIZE)
    append_range(spool, range(5))
    spool.flush()
    spool.close()

    assert len(open_spool(tmp_path)) == 5


# -- API misuse -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_bytes": 100, "when_full": "block"}, "when_full"),
        ({"max_bytes": 100, "segment_bytes": 0}, "segment_bytes"),
        ({"max_bytes": 100, "fsync_interval": -1.0}, "fsync_interval"),
    ],
)
def test_invalid_settings(tmp_path: Path, options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Spool(tmp_path, **options)  # type: ignore[arg-type]


def test_use_before_open(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=BIG)

    with pytest.raises(RuntimeError, match="not open"):
        spool.append(msg_id(0), frame(0))


def test_open_twice(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)

    with pytest.raises(RuntimeError, match="already open"):
        spool.open()


def test_msg_id_too_long(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)

    with pytest.raises(ValueError, match="msg_id"):
        spool.append("x" * 70_000, b"")


def test_context_manager_closes(tmp_path: Path) -> None:
    with Spool(tmp_path, max_bytes=BIG) as spool:
        append_range(spool, range(2))

    with pytest.raises(RuntimeError, match="not open"):
        spool.read(1)


# -- model-based property -------------------------------------------------------------


@dataclass
class ModelRecord:
    """A record of the model; position is None until the spool first returns it."""

    msg_id: str
    frame: bytes
    position: int | None = None


class SpoolMachine(RuleBasedStateMachine):
    """Compare a spool with a list of uncommitted records under random operations.

    ``pending`` lists the uncommitted records, oldest first, and ``read_index`` is the
    model's read cursor into it.
    """

    max_bytes = BIG
    when_full = "drop_oldest"

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="spool-test-"))
        self.spool = self._open()
        self.pending: list[ModelRecord] = []
        self.read_index = 0
        self.acked: set[int] = set()
        self.last_position = 0
        self.appended = 0

    def _open(self) -> Spool:
        return open_spool(
            self.directory,
            max_bytes=self.max_bytes,
            when_full=self.when_full,
            segment_bytes=300,
            fsync_interval=None,
        )

    @rule(size=st.integers(min_value=0, max_value=250))
    def append(self, size: int) -> None:
        number = self.appended
        self.appended += 1
        data = bytes([number % 251]) * size
        record_size = RECORD_OVERHEAD + len(msg_id(number)) + size
        expected_drop = int(self.spool.nbytes + record_size > self.max_bytes)

        assert self.spool.append(msg_id(number), data) == expected_drop
        if not expected_drop:
            self.pending.append(ModelRecord(msg_id(number), data))

    @rule(count=st.integers(min_value=1, max_value=12))
    def read(self, count: int) -> None:
        expected = self.pending[self.read_index : self.read_index + count]
        events = self.spool.read(count)

        assert [e.msg_id for e in events] == [record.msg_id for record in expected]
        assert [e.frame for e in events] == [record.frame for record in expected]
        for record, event in zip(expected, events, strict=True):
            if record.position is None:
                assert event.position > self.last_position
                record.position = event.position
                self.last_position = event.position
            assert event.position == record.position
        self.read_index += len(events)

    def unacked_positions(self) -> list[int]:
        return [
            record.position
            for record in self.pending
            if record.position is not None and record.position not in self.acked
        ]

    @precondition(lambda self: self.unacked_positions())
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        position = data.draw(st.sampled_from(self.unacked_positions()))

        self.spool.ack(position)
        self.acked.add(position)
        while self.pending and self.pending[0].position in self.acked:
            self.acked.discard(self.pending[0].position)
            del self.pending[0]
            self.read_index = max(0, self.read_index - 1)

    @rule()
    def rewind(self) -> None:
        self.spool.rewind()
        self.read_index = 0

    @rule()
    def flush(self) -> None:
        self.spool.flush()

    @rule()
    def reopen(self) -> None:
        self.spool.close()
        self.spool = self._open()
        # Acks above the commit cursor live in memory only.
        self.acked.clear()
        self.read_index = 0

    @invariant()
    def length_matches(self) -> None:
        assert len(self.spool) == len(self.pending)

    @invariant()
    def within_max_bytes(self) -> None:
        assert self.spool.nbytes <= self.max_bytes

    def teardown(self) -> None:
        self.spool.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class FullSpoolMachine(SpoolMachine):
    """The same model with a small spool that rejects records it cannot fit."""

    max_bytes = 1500
    when_full = "drop_newest"


SpoolMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
FullSpoolMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
TestSpoolModel = SpoolMachine.TestCase
TestFullSpoolModel = FullSpoolMachine.TestCase
