"""The asyncio pipeline of one engine instance: bus reader, buffer, encoder, publisher.

Everything runs on one event loop. The bus reader only filters and appends to the
bounded buffer, so it never waits on NATS: Salt's publisher disconnects a reader
that stops draining, and the events in between would be lost. The publisher takes
events from the buffer while the NATS client is connected and leaves them there
while it is not.

Why one loop and not a reader thread: a thread that calls Salt's blocking
``get_event`` and hands frames to the loop through a queue fights the loop for the
GIL on every event. Reading with ``await recv()`` on the loop that runs nats-py
costs one task switch per frame instead; ``tests/bench/bench_bus_reader.py``
measures both.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
import time
from collections.abc import Iterable
from typing import Protocol

from nats import errors as nats_errors
from nats.nuid import NUID

from salt_nats.buffer import BufferedEvent, EventBuffer
from salt_nats.codec import TAG_END, EncodeError, EventEncoder
from salt_nats.config import EngineSettings
from salt_nats.connection import NatsSupervisor
from salt_nats.status import DROP_BUFFER_FULL, DROP_SHUTDOWN, RateLimitedLog, Stats

log = logging.getLogger(__name__)

# Events published between two yields to the loop, so a long backlog after a
# reconnect cannot starve the bus reader.
_PUBLISH_BATCH = 64

# Errors that mean "not now": the event goes back to the buffer for a later try.
_RETRYABLE = (
    nats_errors.ConnectionClosedError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.ConnectionDrainingError,
    nats_errors.OutboundBufferLimitError,
    nats_errors.FlushTimeoutError,
    nats_errors.StaleConnectionError,
    nats_errors.TimeoutError,
    asyncio.TimeoutError,
    OSError,
)


class BusSource(Protocol):
    """Where raw bus frames come from; :class:`salt_nats.bus.MasterBus` in the engine."""

    async def connect(self) -> None: ...

    async def recv(self) -> bytes | None: ...

    def close(self) -> None: ...


class TagFilter:
    """Decide from the tag alone whether an event is forwarded.

    Globs follow fnmatch, as in Salt's ``event_return_whitelist``; ``*`` also
    matches ``/``. An event is forwarded when no exclude glob matches it and,
    if include globs are set, one of them matches.
    """

    def __init__(self, include: Iterable[str], exclude: Iterable[str]) -> None:
        self._include = _compile_globs(include)
        self._exclude = _compile_globs(exclude)

    def allows(self, tag: str) -> bool:
        """Return True when the event with this tag is to be forwarded."""
        if self._exclude is not None and self._exclude.match(tag):
            return False
        return self._include is None or self._include.match(tag) is not None


def _compile_globs(globs: Iterable[str]) -> re.Pattern[str] | None:
    patterns = [fnmatch.translate(g) for g in globs]
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.DOTALL)


class Forwarder:
    """Move events from the bus to NATS until :meth:`stop` is called."""

    def __init__(
        self,
        settings: EngineSettings,
        master_id: str,
        bus: BusSource,
        stats: Stats | None = None,
    ) -> None:
        self.settings = settings
        self.master_id = master_id
        self.bus = bus
        self.stats = stats or Stats()
        self.buffer = EventBuffer(
            settings.buffer_max_events, settings.buffer_max_bytes, settings.buffer_full
        )
        self.filter = TagFilter(settings.include, settings.excluded_globs)
        self.encoder = EventEncoder(
            subject_prefix=settings.subject_prefix,
            master_id=master_id,
            payload_format=settings.format,
            oversize=settings.oversize,
            max_subject_bytes=settings.max_subject_bytes,
        )
        self.supervisor = NatsSupervisor(
            settings,
            self.stats,
            connection_name=f"salt-nats {settings.name}@{master_id}",
            on_ready=self._wake_publisher,
        )
        self._nuid = NUID()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._drop_log = RateLimitedLog(log, settings.drop_log_interval)
        self._tasks: list[asyncio.Task[None]] = []

    # -- life cycle -----------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop`, then publish what is buffered within the shutdown time."""
        log.info("salt-nats: starting engine %s", self.settings.describe())

        # Subscribe to the bus before anything else: events that arrive while the
        # first NATS connect is still retrying belong in the buffer.
        await self.bus.connect()
        self._tasks = [
            asyncio.create_task(self._read_bus(), name="salt-nats-bus-reader"),
            asyncio.create_task(self.supervisor.run(), name="salt-nats-supervisor"),
            asyncio.create_task(self._publish_loop(), name="salt-nats-publisher"),
            asyncio.create_task(self._housekeeping(), name="salt-nats-housekeeping"),
        ]
        stop_waiter = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait(
            [stop_waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task is not stop_waiter and task.exception() is not None:
                log.error(
                    "salt-nats %s: task %s failed; stopping",
                    self.settings.name,
                    task.get_name(),
                    exc_info=task.exception(),
                )
        stop_waiter.cancel()
        await self._shutdown()

    def stop(self) -> None:
        """Ask :meth:`run` to finish; safe to call from a signal handler on the loop."""
        self._stop.set()

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout
        reader, supervisor, publisher, housekeeping = self._tasks

        reader.cancel()
        housekeeping.cancel()
        self.bus.close()

        # Let the publisher drain the buffer while a connection is up, keeping a
        # quarter of the time for the final flush.
        drain_until = deadline - self.settings.shutdown_timeout / 4
        while len(self.buffer) and loop.time() < drain_until and not publisher.done():
            self._wake_publisher()
            await asyncio.sleep(0.01)
        publisher.cancel()

        left = len(self.buffer)
        if left:
            self.stats.dropped[DROP_SHUTDOWN] += left
            log.warning(
                "salt-nats %s: %d buffered events were not published before shutdown",
                self.settings.name,
                left,
            )
        await self.supervisor.close(flush_timeout=deadline - loop.time())
        supervisor.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._drop_log.flush(force=True)
        log.info(
            "salt-nats %s: stopped; received %d, published %d, filtered %d, dropped %s",
            self.settings.name,
            self.stats.received,
            self.stats.published,
            self.stats.filtered,
            dict(self.stats.dropped) or 0,
        )

    # -- bus reader -----------------------------------------------------------------

    async def _read_bus(self) -> None:
        stats = self.stats
        buffer = self.buffer
        while True:
            frame = await self.bus.recv()
            if not frame:
                continue
            stats.received += 1
            end = frame.find(TAG_END)
            tag = frame[: end if end >= 0 else len(frame)].decode("utf-8", "surrogateescape")
            if not self.filter.allows(tag):
                stats.filtered += 1
                continue
            dropped = buffer.put(BufferedEvent(frame, self._nuid.next().decode(), time.monotonic()))
            for event in dropped:
                self._count_drop(
                    DROP_BUFFER_FULL,
                    "buffer full (%d events, %d bytes); dropped an event (buffer_full: %s)",
                    len(buffer),
                    buffer.nbytes,
                    self.settings.buffer_full,
                    event=event,
                )
            self._wake.set()

    # -- publisher ------------------------------------------------------------------

    def _wake_publisher(self) -> None:
        self._wake.set()

    async def _publish_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._publish_buffered()

    async def _publish_buffered(self) -> None:
        """Publish buffered events while the client stays connected."""
        published = 0
        while len(self.buffer):
            client = self.supervisor.connected_client
            if client is None:
                return  # the supervisor wakes us on (re)connect
            event = self.buffer.pop()
            try:
                message = self.encoder.encode(event.frame, event.msg_id, client.max_payload)
            except EncodeError as exc:
                self._count_drop(exc.kind, "%s", str(exc), event=event)
                continue

            try:
                await client.publish(message.subject, message.payload, headers=message.headers)
            except _RETRYABLE as exc:
                self.stats.record_error(f"publish failed: {exc!r}")
                for lost in self.buffer.put_back(event):
                    self._count_drop(
                        DROP_BUFFER_FULL, "buffer full while retrying; dropped an event", event=lost
                    )
                log.debug("salt-nats %s: publish failed (%r); will retry", self.settings.name, exc)
                await asyncio.sleep(0.05)
                continue

            self.stats.published += 1
            if message.truncated_values:
                self.stats.truncated += 1
                self._drop_log.note(
                    "truncated",
                    "salt-nats %s: event on %s exceeded max_payload (%d bytes); replaced %d "
                    "values with a marker (oversize: truncate)",
                    self.settings.name,
                    message.subject,
                    client.max_payload,
                    message.truncated_values,
                )
            published += 1
            if published % _PUBLISH_BATCH == 0:
                await asyncio.sleep(0)

    # -- bookkeeping ----------------------------------------------------------------

    def _count_drop(self, reason: str, message: str, *args: object, event: BufferedEvent) -> None:
        self.stats.dropped[reason] += 1
        self.stats.record_error(f"dropped event ({reason})")
        self._drop_log.note(
            reason,
            "salt-nats %s: " + message + " [tag %.200s]",
            self.settings.name,
            *args,
            event.frame.partition(TAG_END)[0].decode("utf-8", "replace"),
        )

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._drop_log.flush()
