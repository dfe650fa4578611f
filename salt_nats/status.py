"""Counters of one engine instance and rate-limited logging of drops."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# Drop reasons, used as counter keys in status output and in log lines.
DROP_BUFFER_FULL = "buffer_full"
DROP_SPOOL_FULL = "spool_full"
DROP_OVERSIZE = "oversize"
DROP_INVALID_FRAME = "invalid_frame"
DROP_ENCODE = "json"
DROP_ENCODE_FAILED = "encode_failed"
DROP_SHUTDOWN = "shutdown"


@dataclass
class Stats:
    """Counters of one engine instance; every field is cumulative since start."""

    started_at: float = field(default_factory=time.time)
    received: int = 0
    filtered: int = 0
    published: int = 0
    acknowledged: int = 0
    retried: int = 0
    duplicates: int = 0
    truncated: int = 0
    spooled: int = 0
    replayed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    bus_connects: int = 0
    bus_disconnects: int = 0
    nats_connects: int = 0
    nats_disconnects: int = 0
    nats_reconnects: int = 0
    nats_errors: int = 0
    last_error: str | None = None
    last_error_time: float | None = None

    def record_error(self, message: str) -> None:
        """Keep the latest error and its wall-clock time for status output."""
        self.last_error = message
        self.last_error_time = time.time()

    def snapshot(self) -> dict[str, Any]:
        """Return the counters as plain data for status replies and logs."""
        return {
            "uptime": round(time.time() - self.started_at, 3),
            "received": self.received,
            "filtered": self.filtered,
            "published": self.published,
            "acknowledged": self.acknowledged,
            "retried": self.retried,
            "duplicates": self.duplicates,
            "truncated": self.truncated,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "dropped": dict(self.dropped),
            "dropped_total": sum(self.dropped.values()),
            "bus_connects": self.bus_connects,
            "bus_disconnects": self.bus_disconnects,
            "nats_connects": self.nats_connects,
            "nats_disconnects": self.nats_disconnects,
            "nats_reconnects": self.nats_reconnects,
            "nats_errors": self.nats_errors,
            "last_error": self.last_error,
            "last_error_time": self.last_error_time,
        }


class RateLimitedLog:
    """Log the first occurrence of each kind at once, then sums at most once per interval.

    The engine meets drops and connection errors in bursts; one line per event
    would flood the master log exactly when the operator needs to read it.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float,
        level: int = logging.WARNING,
        prefix: str = "salt-nats",
    ):
        self.logger = logger
        self.prefix = prefix
        self.interval = interval
        self.level = level
        self._pending: Counter[str] = Counter()
        self._last_logged: dict[str, float] = {}

    def note(self, kind: str, message: str, *args: Any) -> None:
        """Count one occurrence of ``kind``; log it now if this kind is due."""
        now = time.monotonic()
        last = self._last_logged.get(kind)
        if last is None or now - last >= self.interval:
            suppressed = self._pending.pop(kind, 0)
            suffix = f" ({suppressed} more since the last report)" if suppressed else ""
            self.logger.log(self.level, message + suffix, *args)
            self._last_logged[kind] = now
        else:
            self._pending[kind] += 1

    def flush(self, force: bool = False) -> None:
        """Log the sums of kinds whose interval has passed (or all, with ``force``)."""
        now = time.monotonic()
        for kind, count in list(self._pending.items()):
            if force or now - self._last_logged.get(kind, 0.0) >= self.interval:
                self.logger.log(
                    self.level,
                    "%s: %d more of '%s' in the last %.1f s",
                    self.prefix,
                    count,
                    kind,
                    max(self.interval, now - self._last_logged.get(kind, now)),
                )
                self._last_logged[kind] = now
                del self._pending[kind]
