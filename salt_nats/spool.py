"""Bounded on-disk spool of bus frames, for NATS outages and engine restarts.

The engine appends events here when NATS is unreachable or the in-memory buffer is
full, and replays them in order once NATS is back. Each record keeps the event's
``msg_id``, so a replayed event carries the same ``Nats-Msg-Id`` as the first try and
JetStream de-duplicates it.

Directory layout::

    <directory>/00000000000000000001.seg   a segment, named by the position of its first record
    <directory>/cursor.json                the commit cursor, replaced atomically:
        {"version": 1, "first_uncommitted": N, "next_position": M}

Record format, little-endian::

    magic       1 byte    0xA5, which is also the format version
    length      uint32    payload length in bytes
    crc32       uint32    zlib.crc32 of the payload
    payload:
      position  uint64    record number, +1 per record over the spool's life
      id_length uint16    length of msg_id in bytes
      msg_id    UTF-8
      frame     the raw bus frame, to the end of the payload

Durability: :meth:`Spool.append` writes into a user-space buffer. :meth:`Spool.flush`
hands the data and the cursor to the OS, after which a kill of the engine process
(SIGKILL included) loses nothing. Only an fsync protects data from an OS crash or a
power loss. :meth:`Spool.flush` runs one when ``fsync_interval`` seconds have passed
since the last, and :meth:`Spool.close` always runs one. With ``fsync_interval`` None,
neither does.

Acknowledged positions are persisted when the cursor file is written: at
:meth:`Spool.flush`, at :meth:`Spool.close` and before segment files are deleted.
Records acknowledged after the last cursor write are delivered again after a restart,
and JetStream drops those duplicates by ``msg_id`` within the stream's duplicate window.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
import zlib
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

WHEN_FULL_POLICIES = ("drop_oldest", "drop_newest")

RECORD_MAGIC = 0xA5
_HEADER = struct.Struct("<BII")  # magic, payload length, crc32 of the payload
_PAYLOAD_PREFIX = struct.Struct("<QH")  # position, msg_id length
RECORD_OVERHEAD = _HEADER.size + _PAYLOAD_PREFIX.size
MAX_MSG_ID_BYTES = 0xFFFF

FIRST_POSITION = 1
SEGMENT_SUFFIX = ".seg"
CURSOR_FILE = "cursor.json"
CURSOR_VERSION = 1
_CURSOR_TEMP_FILE = CURSOR_FILE + ".tmp"
_POSITION_DIGITS = 20

# A segment contains at most max_bytes / _MIN_SEGMENTS_PER_SPOOL bytes, so drop_oldest,
# which deletes whole segments, discards about an eighth of the spool at a time at most.
_MIN_SEGMENTS_PER_SPOOL = 8

# Size of the user-space write buffer. With it, appending a 2 KiB record took 2.1 to
# 3.0 us and reading it back in batches of 64 took 2.4 to 3.7 us (timeit over 200,000
# records, several runs, 2-core Intel Xeon VM, Python 3.11, ext4).
_WRITE_BUFFER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class SpooledEvent:
    """An event read back from the spool."""

    position: int
    msg_id: str
    frame: bytes


@dataclass(slots=True)
class _Segment:
    """One segment file and the file offset of each of its records."""

    first: int
    path: Path
    offsets: array[int] = field(default_factory=lambda: array("Q"))
    size: int = 0

    @property
    def end(self) -> int:
        """Position after the last record."""
        return self.first + len(self.offsets)


class _BadRecord(Exception):
    """A record that fails its checks. ``truncated`` is True when the file ends inside it."""

    def __init__(self, reason: str, truncated: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.truncated = truncated


def _segment_first(segment: _Segment) -> int:
    return segment.first


def _check_record(data: memoryview, offset: int, position: int, verify_crc: bool = True) -> int:
    """Validate the record at ``offset`` and return the offset just after it.

    Raises _BadRecord when the record is cut short, has a wrong magic byte, a CRC
    mismatch, or contains another position than ``position``. Without ``verify_crc``,
    a damaged payload passes, but a wrong length still fails at the next record
    because its magic byte or position does not match.
    """
    if offset + _HEADER.size > len(data):
        raise _BadRecord("record header cut short", truncated=True)
    header: tuple[int, int, int] = _HEADER.unpack_from(data, offset)
    magic, length, crc = header
    if magic != RECORD_MAGIC:
        raise _BadRecord(f"invalid magic byte 0x{magic:02x}", truncated=False)

    start = offset + _HEADER.size
    end = start + length
    if end > len(data):
        raise _BadRecord(f"payload of {length} bytes cut short", truncated=True)
    if length < _PAYLOAD_PREFIX.size:
        raise _BadRecord(f"payload length {length} is too short", truncated=False)
    if verify_crc and zlib.crc32(data[start:end]) != crc:
        raise _BadRecord("CRC32 mismatch", truncated=False)

    stored_position, id_length = _PAYLOAD_PREFIX.unpack_from(data, start)
    if stored_position != position:
        raise _BadRecord(f"position {stored_position} where {position} was expected", False)
    if _PAYLOAD_PREFIX.size + id_length > length:
        raise _BadRecord(f"msg_id length {id_length} exceeds the payload", truncated=False)
    return end


def _decode_record(data: bytes, offset: int, end: int) -> tuple[int, str, bytes]:
    """Return position, msg_id and frame of a record that passed _check_record."""
    start = offset + _HEADER.size
    position, id_length = _PAYLOAD_PREFIX.unpack_from(data, start)
    id_start = start + _PAYLOAD_PREFIX.size
    frame_start = id_start + id_length
    return position, data[id_start:frame_start].decode("utf-8"), data[frame_start:end]


class Spool:
    """Append-only, size-bounded, segmented queue of (msg_id, frame) records on disk.

    Records are read in order with :meth:`read`, which does not consume them. A record
    is committed, and gone for good, once :meth:`ack` has confirmed it and every record
    before it. Acks may arrive in any order. :meth:`rewind` makes read-but-unacked
    records readable again.

    When a new record does not fit under ``max_bytes``, ``when_full`` decides.
    ``drop_oldest`` deletes the oldest segments and ``drop_newest`` rejects the new
    record. :meth:`append` returns the number of records dropped either way.

    Segments are at most ``segment_bytes`` and at most an eighth of ``max_bytes``,
    except that a segment always contains at least one record.

    The spool is not thread-safe. One spool directory serves one engine.

    NOTE: nothing locks the directory, so two processes that open the same directory
    corrupt each other's segments. Give every engine its own directory.
    """

    def __init__(
        self,
        directory: str | Path,
        max_bytes: int,
        when_full: str = "drop_oldest",
        segment_bytes: int = 8 * 1024 * 1024,
        fsync_interval: float | None = 1.0,
    ) -> None:
        if when_full not in WHEN_FULL_POLICIES:
            raise ValueError(
                f"invalid when_full policy {when_full!r}, expected one of "
                + ", ".join(WHEN_FULL_POLICIES)
            )
        if max_bytes <= 0:
            raise ValueError(f"invalid max_bytes {max_bytes}, expected a positive number of bytes")
        if segment_bytes <= 0:
            raise ValueError(
                f"invalid segment_bytes {segment_bytes}, expected a positive number of bytes"
            )
        if fsync_interval is not None and fsync_interval < 0:
            raise ValueError(
                f"invalid fsync_interval {fsync_interval}, expected seconds >= 0 or None"
            )

        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.segment_bytes = min(segment_bytes, max(1, max_bytes // _MIN_SEGMENTS_PER_SPOOL))
        self.fsync_interval = fsync_interval
        self._reset_state()

    def _reset_state(self) -> None:
        self._opened = False
        self._segments: list[_Segment] = []
        self._next_position = FIRST_POSITION
        self._first_uncommitted = FIRST_POSITION
        self._read_position = FIRST_POSITION
        self._acked: set[int] = set()
        self._nbytes = 0
        self._records = 0  # records in all segments, committed ones in the oldest included
        self._dropped = 0
        self._corrupt_records = 0

        self._writer: IO[bytes] | None = None
        self._active: _Segment | None = None
        self._writer_dirty = False
        self._reader_fd: int | None = None
        self._reader_segment: _Segment | None = None

        self._cursor_on_disk: tuple[int, int] | None = None
        self._unsynced_paths: set[Path] = set()
        self._directory_unsynced = False
        self._last_sync = time.monotonic()

    # -- life cycle -------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory, recover the segments and load the commit cursor.

        NOTE: open() reads every segment file and checks the CRC of every uncommitted
        record, which took 0.35 to 0.5 s for 420 MB on a 2-core VM with ext4. Call it
        before the event loop starts, or in an executor, when the spool may be large.
        """
        if self._opened:
            raise RuntimeError(f"spool {self.directory} is already open")
        self._reset_state()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.directory / _CURSOR_TEMP_FILE).unlink(missing_ok=True)

        first_uncommitted, next_position = self._load_cursor()
        self._load_segments(first_uncommitted, next_position)
        self._opened = True

        if self._nbytes > self.max_bytes:
            log.warning(
                "salt-nats spool %s: contains %d bytes, more than max_bytes %d. "
                "The next appends apply when_full: %s",
                self.directory,
                self._nbytes,
                self.max_bytes,
                self.when_full,
            )
        log.info(
            "salt-nats spool %s: opened with %d uncommitted records (%d bytes in %d segments), "
            "next position %d",
            self.directory,
            len(self),
            self._nbytes,
            len(self._segments),
            self._next_position,
        )

    def close(self) -> None:
        """Flush, fsync unless ``fsync_interval`` is None, and close all files."""
        if not self._opened:
            return
        self.flush(force_sync=True)
        self._close_writer()
        self._close_reader()
        self._opened = False
        log.info(
            "salt-nats spool %s: closed with %d uncommitted records (%d bytes)",
            self.directory,
            len(self),
            self._nbytes,
        )

    def __enter__(self) -> Spool:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- state --------------------------------------------------------------------------

    def __len__(self) -> int:
        """Records stored and not yet committed, read-but-unacked ones included."""
        if not self._segments:
            return 0
        return self._records - max(0, self._first_uncommitted - self._segments[0].first)

    @property
    def nbytes(self) -> int:
        """Bytes of the segment files, write buffer included.

        The oldest segment counts whole until all its records are committed and it is
        deleted. The total stays at most ``max_bytes``, except when :meth:`open` finds
        more because ``max_bytes`` was lowered. Then the next append with
        ``drop_oldest`` drops enough, and ``drop_newest`` rejects appends until acks
        free the space.
        """
        return self._nbytes

    @property
    def has_unread(self) -> bool:
        """Return True when records were appended after the last one :meth:`read` returned."""
        return self._read_position < self._next_position

    @property
    def dropped(self) -> int:
        """Records dropped by the size policy since :meth:`open`."""
        return self._dropped

    @property
    def corrupt_records(self) -> int:
        """Uncommitted records found damaged and skipped since :meth:`open`.

        A damaged record hides the rest of its segment. The count is exact when a
        later segment exists, and a lower bound for the last segment.
        """
        return self._corrupt_records

    # -- append -------------------------------------------------------------------------

    def append(self, msg_id: str, frame: bytes) -> int:
        """Append one record and return how many records were dropped to respect max_bytes.

        The return value is 0 when the record fits. With ``drop_newest``, or when the
        record alone is larger than ``max_bytes``, it is 1 and the record is not stored.
        Raises ValueError when msg_id is longer than 65535 bytes in UTF-8.
        """
        self._require_open()
        id_bytes = msg_id.encode("utf-8")
        if len(id_bytes) > MAX_MSG_ID_BYTES:
            raise ValueError(
                f"msg_id of {len(id_bytes)} bytes exceeds the maximum of {MAX_MSG_ID_BYTES} bytes"
            )
        size = RECORD_OVERHEAD + len(id_bytes) + len(frame)

        dropped = 0
        if self._nbytes + size > self.max_bytes:
            if size > self.max_bytes or self.when_full == "drop_newest":
                self._dropped += 1
                log.debug(
                    "salt-nats spool %s: rejected a record of %d bytes (%d of %d bytes used)",
                    self.directory,
                    size,
                    self._nbytes,
                    self.max_bytes,
                )
                return 1
            dropped = self._drop_oldest(size)

        active = self._active
        if active is None or (active.offsets and active.size + size > self.segment_bytes):
            active = self._start_segment()

        position = self._next_position
        prefix = _PAYLOAD_PREFIX.pack(position, len(id_bytes)) + id_bytes
        crc = zlib.crc32(frame, zlib.crc32(prefix))
        writer = self._writer
        assert writer is not None
        writer.write(_HEADER.pack(RECORD_MAGIC, size - _HEADER.size, crc) + prefix)
        writer.write(frame)

        active.offsets.append(active.size)
        active.size += size
        self._nbytes += size
        self._records += 1
        self._next_position = position + 1
        self._writer_dirty = True
        return dropped

    def _start_segment(self) -> _Segment:
        """Close the active segment and start a new one at the next position."""
        self._close_writer()
        path = self._segment_path(self._next_position)
        # A leftover file of this name contains no indexed record, so truncating it is safe.
        self._writer = open(path, "wb", buffering=_WRITE_BUFFER_BYTES)  # noqa: SIM115
        segment = _Segment(self._next_position, path)
        self._segments.append(segment)
        self._active = segment
        self._directory_unsynced = True
        log.debug("salt-nats spool %s: started segment %s", self.directory, path.name)
        return segment

    def _drop_oldest(self, size: int) -> int:
        """Delete the oldest segments until ``size`` more bytes fit, and count the records lost."""
        freed = 0
        count = 0
        while self._nbytes - freed + size > self.max_bytes:
            freed += self._segments[count].size
            count += 1

        lost = sum(self._unacked_in(segment) for segment in self._segments[:count])
        names = ", ".join(segment.path.name for segment in self._segments[:count])
        new_start = self._segments[count].first if count < len(self._segments) else None
        self._remove_oldest_segments(count, new_start)

        if self._first_uncommitted in self._acked:
            self._commit(self._first_uncommitted)

        self._dropped += lost
        log.warning(
            "salt-nats spool %s: full at max_bytes %d, dropped the %d oldest unacknowledged "
            "records by deleting %s (when_full: drop_oldest)",
            self.directory,
            self.max_bytes,
            lost,
            names,
        )
        return lost

    def _unacked_in(self, segment: _Segment) -> int:
        """Count the records of a segment that are neither committed nor acknowledged."""
        start = max(segment.first, self._first_uncommitted)
        end = segment.end
        if start >= end:
            return 0
        acked = sum(1 for position in self._acked if start <= position < end)
        return end - start - acked

    # -- read, ack, rewind --------------------------------------------------------------

    def read(self, max_records: int) -> list[SpooledEvent]:
        """Return up to ``max_records`` records after the read cursor and advance it.

        The records stay stored until acknowledged with :meth:`ack`.
        """
        self._require_open()
        events: list[SpooledEvent] = []
        while len(events) < max_records:
            position = self._next_stored(self._read_position)
            self._read_position = position
            if position >= self._next_position:
                break

            index = bisect_right(self._segments, position, key=_segment_first) - 1
            segment = self._segments[index]
            batch = self._read_batch(segment, position, max_records - len(events))
            if batch:
                events.extend(batch)
                self._read_position = batch[-1].position + 1
        return events

    def _read_batch(self, segment: _Segment, position: int, limit: int) -> list[SpooledEvent]:
        """Read up to ``limit`` records of one segment, starting at ``position``.

        A damaged record ends the batch and the segment, see _discard_segment_tail.
        """
        if segment is self._active and self._writer_dirty:
            assert self._writer is not None
            self._writer.flush()
            self._writer_dirty = False

        first_index = position - segment.first
        stop_index = min(len(segment.offsets), first_index + limit)
        start = segment.offsets[first_index]
        stop = segment.offsets[stop_index] if stop_index < len(segment.offsets) else segment.size
        data = os.pread(self._reader_fd_for(segment), stop - start, start)
        view = memoryview(data)

        events: list[SpooledEvent] = []
        for index in range(first_index, stop_index):
            offset = segment.offsets[index] - start
            try:
                end = _check_record(view, offset, segment.first + index)
            except _BadRecord as exc:
                self._discard_segment_tail(segment, index, exc.reason)
                break
            events.append(SpooledEvent(*_decode_record(data, offset, end)))
        return events

    def ack(self, position: int) -> None:
        """Mark the record at ``position`` delivered and commit the acknowledged prefix.

        The commit cursor moves past every record up to the first one that is not yet
        acknowledged, and segments whose records are all committed are deleted. Acks
        of committed or dropped positions are ignored.
        Raises ValueError for a position that was never appended.
        """
        self._require_open()
        if position < self._first_uncommitted:
            return
        if position >= self._next_position:
            raise ValueError(
                f"cannot acknowledge position {position}, which was never appended "
                f"(next position {self._next_position})"
            )
        self._acked.add(position)
        if position == self._first_uncommitted:
            self._commit(position)

    def rewind(self) -> None:
        """Move the read cursor back to the first uncommitted record.

        The next :meth:`read` returns the read-but-unacknowledged records again, for
        example after a disconnect lost their acks.
        """
        self._require_open()
        self._read_position = self._first_uncommitted

    def _commit(self, position: int) -> None:
        """Advance the commit cursor from ``position`` over acknowledged and missing records."""
        acked = self._acked
        while True:
            while position in acked:
                acked.remove(position)
                position += 1
            stored = self._next_stored(position)
            if stored == position:
                break
            # Records lost to corruption leave gaps, and no ack ever arrives for them.
            acked.difference_update([p for p in acked if p < stored])
            position = stored

        done = 0
        while done < len(self._segments) and self._segments[done].end <= position:
            done += 1
        if done:
            self._remove_oldest_segments(done, position)
        else:
            self._first_uncommitted = position
        self._read_position = max(self._read_position, position)

    def _next_stored(self, position: int) -> int:
        """Return the first stored position >= ``position``, or the next position to append."""
        segments = self._segments
        index = bisect_right(segments, position, key=_segment_first) - 1
        if index >= 0 and position < segments[index].end:
            return position
        if index + 1 < len(segments):
            return segments[index + 1].first
        return self._next_position

    def _remove_oldest_segments(self, count: int, new_start: int | None) -> None:
        """Commit up to ``new_start`` (or everything) and delete the ``count`` oldest segments.

        The cursor file is written first, so positions are not reused after a restart.
        """
        if new_start is None:
            new_start = self._next_position
        self._first_uncommitted = max(self._first_uncommitted, new_start)
        self._read_position = max(self._read_position, self._first_uncommitted)
        if self._acked:
            self._acked = {p for p in self._acked if p >= self._first_uncommitted}
        self._write_cursor(sync=False)

        for segment in self._segments[:count]:
            if segment is self._active:
                self._close_writer()
            if segment is self._reader_segment:
                self._close_reader()
            self._delete_file(segment.path)
            self._nbytes -= segment.size
            self._records -= len(segment.offsets)
            log.debug("salt-nats spool %s: deleted segment %s", self.directory, segment.path.name)
        del self._segments[:count]

    def _discard_segment_tail(self, segment: _Segment, index: int, reason: str) -> None:
        """Forget the damaged record at ``index`` of a segment and every record after it.

        A damaged record has no trustworthy length, so the records after it in the
        same segment cannot be found. The file is truncated at the damaged record.
        """
        position = segment.first + index
        offset = segment.offsets[index]
        lost = max(0, segment.end - max(position, self._first_uncommitted))
        self._corrupt_records += lost
        log.warning(
            "salt-nats spool %s: %s at offset %d in %s (position %d). Truncated the file "
            "there and skipped %d records",
            self.directory,
            reason,
            offset,
            segment.path.name,
            position,
            lost,
        )

        if segment is self._active:
            # Later appends must not follow the damaged record in this file.
            self._close_writer()
        os.truncate(segment.path, offset)
        self._mark_unsynced(segment.path)
        self._nbytes -= segment.size - offset
        self._records -= len(segment.offsets) - index
        segment.size = offset
        del segment.offsets[index:]

        if not segment.offsets:
            self._segments.remove(segment)
            if segment is self._reader_segment:
                self._close_reader()
            self._delete_file(segment.path)
        if self._first_uncommitted >= segment.end:
            self._commit(self._first_uncommitted)

    # -- flush and sync -----------------------------------------------------------------

    def flush(self, force_sync: bool = False) -> None:
        """Write buffered records and the cursor file to the OS, and fsync when due.

        An fsync runs when ``fsync_interval`` seconds have passed since the last one,
        or when ``force_sync`` is set, and never when ``fsync_interval`` is None.
        """
        self._require_open()
        sync = self.fsync_interval is not None and (
            force_sync or time.monotonic() - self._last_sync >= self.fsync_interval
        )

        if self._writer is not None and self._writer_dirty:
            self._writer.flush()
            self._writer_dirty = False
        if sync or self._cursor_on_disk != self._cursor_state():
            self._write_cursor(sync=sync)
        if sync:
            self._sync_files()

    def _cursor_state(self) -> tuple[int, int]:
        return (self._first_uncommitted, self._next_position)

    def _write_cursor(self, sync: bool) -> None:
        """Replace the cursor file atomically, with an fsync of its data when ``sync``."""
        first_uncommitted, next_position = self._cursor_state()
        text = json.dumps(
            {
                "version": CURSOR_VERSION,
                "first_uncommitted": first_uncommitted,
                "next_position": next_position,
            }
        )
        temp_path = self.directory / _CURSOR_TEMP_FILE
        with open(temp_path, "w", encoding="ascii") as temp:
            temp.write(text)
            temp.flush()
            if sync:
                os.fsync(temp.fileno())
        os.replace(temp_path, self.directory / CURSOR_FILE)
        self._cursor_on_disk = (first_uncommitted, next_position)
        self._directory_unsynced = True

    def _sync_files(self) -> None:
        """Fsync the active segment, segments closed since the last fsync, and the directory."""
        if self._writer is not None:
            os.fsync(self._writer.fileno())
        for path in self._unsynced_paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._unsynced_paths.clear()
        if self._directory_unsynced:
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._directory_unsynced = False
        self._last_sync = time.monotonic()

    # -- files ----------------------------------------------------------------------------

    def _segment_path(self, first_position: int) -> Path:
        return self.directory / f"{first_position:0{_POSITION_DIGITS}d}{SEGMENT_SUFFIX}"

    def _close_writer(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        if self._active is not None:
            self._mark_unsynced(self._active.path)
        self._writer = None
        self._active = None
        self._writer_dirty = False

    def _delete_file(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self._unsynced_paths.discard(path)
        self._directory_unsynced = True

    def _mark_unsynced(self, path: Path) -> None:
        if self.fsync_interval is not None:
            self._unsynced_paths.add(path)

    def _reader_fd_for(self, segment: _Segment) -> int:
        if segment is not self._reader_segment or self._reader_fd is None:
            self._close_reader()
            self._reader_fd = os.open(segment.path, os.O_RDONLY)
            self._reader_segment = segment
        return self._reader_fd

    def _close_reader(self) -> None:
        if self._reader_fd is not None:
            os.close(self._reader_fd)
        self._reader_fd = None
        self._reader_segment = None

    def _require_open(self) -> None:
        if not self._opened:
            raise RuntimeError(f"spool {self.directory} is not open, call open() first")

    # -- recovery -------------------------------------------------------------------------

    def _load_cursor(self) -> tuple[int, int]:
        """Return (first_uncommitted, next_position) from the cursor file, or the defaults."""
        path = self.directory / CURSOR_FILE
        try:
            cursor = json.loads(path.read_text(encoding="ascii"))
            first_uncommitted = int(cursor["first_uncommitted"])
            next_position = int(cursor["next_position"])
        except FileNotFoundError:
            return FIRST_POSITION, FIRST_POSITION
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning(
                "salt-nats spool %s: invalid cursor file %s (%r). Replaying every stored record",
                self.directory,
                path,
                exc,
            )
            return FIRST_POSITION, FIRST_POSITION

        self._cursor_on_disk = (first_uncommitted, next_position)
        return max(FIRST_POSITION, first_uncommitted), max(FIRST_POSITION, next_position)

    def _list_segment_files(self) -> list[tuple[int, Path]]:
        found: list[tuple[int, Path]] = []
        for path in self.directory.iterdir():
            stem = path.name.removesuffix(SEGMENT_SUFFIX)
            if path.name.endswith(SEGMENT_SUFFIX) and stem.isdigit() and path.is_file():
                found.append((int(stem), path))
        found.sort()
        return found

    def _load_segments(self, first_uncommitted: int, next_position: int) -> None:
        """Index every segment file, repair damaged ones and set the cursors."""
        files = self._list_segment_files()
        for number, (first, path) in enumerate(files):
            following = files[number + 1][0] if number + 1 < len(files) else None
            if following is not None and following <= first_uncommitted:
                # Every record here is committed. The file is left over when a
                # restart came between the cursor write and the delete.
                self._delete_file(path)
                continue

            segment = self._scan_segment(first, path, following, first_uncommitted, next_position)
            if segment.offsets:
                self._segments.append(segment)
                self._nbytes += segment.size
                self._records += len(segment.offsets)
            else:
                self._delete_file(path)

        if self._segments:
            next_position = max(next_position, self._segments[-1].end)
        self._next_position = max(next_position, first_uncommitted)
        self._first_uncommitted = first_uncommitted
        self._read_position = first_uncommitted
        self._commit(self._next_stored(first_uncommitted))

    def _scan_segment(
        self,
        first: int,
        path: Path,
        following: int | None,
        first_uncommitted: int,
        next_position: int,
    ) -> _Segment:
        """Validate every record of a segment file and truncate it after the last good one."""
        data = memoryview(path.read_bytes())
        segment = _Segment(first, path)
        offset = 0
        problem: _BadRecord | None = None
        while offset < len(data):
            position = segment.end
            if following is not None and position >= following:
                problem = _BadRecord(f"overlaps segment {following}", truncated=False)
                break
            try:
                # Committed records are never read again, so only their length matters.
                end = _check_record(data, offset, position, position >= first_uncommitted)
            except _BadRecord as exc:
                problem = exc
                break
            segment.offsets.append(offset)
            offset = end
        segment.size = offset

        if problem is not None:
            position = segment.end
            # The last segment counts the damaged record itself and the records up
            # to the next position in the cursor file, which may be stale.
            end = following if following is not None else max(next_position, position + 1)
            lost = max(0, end - max(position, first_uncommitted))
            self._corrupt_records += lost
            kind = "truncated last record" if problem.truncated else "damaged record"
            log.warning(
                "salt-nats spool %s: %s (%s) at offset %d in %s (position %d). "
                "Truncated the file there and skipped %s%d records",
                self.directory,
                kind,
                problem.reason,
                offset,
                path.name,
                position,
                "at least " if following is None else "",
                lost,
            )
            os.truncate(path, offset)
            self._mark_unsynced(path)
        return segment
