"""The asyncio pipeline of one engine instance: bus reader, buffer, encoder, publisher.

Everything runs on one event loop. The bus reader filters each read's frames and
appends them to the bounded buffer. When the publisher task is idle and NATS is
connected, the reader then publishes them itself, and it stops before nats-py would
wait for a flush. The publisher task publishes everything else. In nats-py 2.16 a
publish waits only for that flush, so the reader does not wait on NATS. That matters
because Salt's publisher disconnects a reader that stops draining, and the events in
between would be lost. The publisher task takes events from the buffer while the NATS
client is connected and leaves them there while it is not.

Why one loop and not a reader thread: ``tests/bench/bench_bus_reader.py`` runs both
against a real master (salt 3008.4, 2 cores). Reading on the loop that runs nats-py
cost 189 µs of CPU per event at 500 events/s; a thread calling Salt's blocking
``get_event`` and handing frames to the loop cost 464 µs. Median latency was the
same (1.7 ms), and neither lost an event. The figures are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fnmatch
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from nats import errors as nats_errors
from nats.aio.client import Client
from nats.js import errors as js_errors
from nats.js.client import JetStreamContext
from nats.nuid import NUID

from salt_nats import __version__, control
from salt_nats.backlog import Backlog
from salt_nats.buffer import BufferedEvent, EventBuffer
from salt_nats.codec import (
    TAG_END,
    EncodedEvent,
    EncodeError,
    EventEncoder,
    split_frame,
    unpack_data,
)
from salt_nats.config import EngineSettings
from salt_nats.connection import NatsSupervisor
from salt_nats.inbound import InboundBridge, InboundGate, InboundSettings
from salt_nats.jetstream import StreamSetupError, ensure_stream
from salt_nats.micro import start_micro_service
from salt_nats.spool import Spool
from salt_nats.status import (
    DROP_BUFFER_FULL,
    DROP_ENCODE_FAILED,
    DROP_SHUTDOWN,
    RateLimitedLog,
    Stats,
)

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
    """Source of raw bus frames: :class:`salt_nats.bus.MasterBus` in the engine."""

    async def connect(self) -> None: ...

    async def recv_batch(self) -> list[bytes]:
        """Return the frames read so far, waiting for one; an empty list once closed."""
        ...

    def close(self) -> None: ...


class EventFirer(Protocol):
    """Fires events onto the master bus; :class:`salt_nats.bus.BusFirer` in the engine."""

    async def fire(self, data: dict[str, Any], tag: str) -> bool: ...

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


def _ack_error(msg: Any) -> str | None:
    """Return why a JetStream acknowledgement reports a failure, or None for a success."""
    data = msg.data
    if not msg.headers and data.startswith(b'{"stream":') and b'"error"' not in data:
        return None  # the usual success, without parsing it
    headers = msg.headers or {}
    status = headers.get("Status")
    if status == "503":
        return "no stream captures the subject (no responders)"
    if status:
        return f"status {status} {headers.get('Description', '')}".strip()
    try:
        response = json.loads(msg.data)
    except ValueError:
        return f"invalid acknowledgement {msg.data[:200]!r}"
    if not isinstance(response, dict):
        return f"invalid acknowledgement {msg.data[:200]!r}"
    if "error" in response:
        return str(response["error"])
    if "stream" not in response:
        return f"invalid acknowledgement {msg.data[:200]!r}"
    return None


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()


def _compile_globs(globs: Iterable[str]) -> re.Pattern[str] | None:
    patterns = [fnmatch.translate(g) for g in globs]
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.DOTALL)


@dataclass(slots=True)
class _Inflight:
    event: BufferedEvent
    deadline: float  # loop.time() after which the event is published again


class Forwarder:
    """Move events from the bus to NATS until :meth:`stop` is called."""

    def __init__(
        self,
        settings: EngineSettings,
        master_id: str,
        bus: BusSource,
        stats: Stats | None = None,
        *,
        firer: EventFirer | None = None,
        status_dir: str | None = None,
    ) -> None:
        self.settings = settings
        self.master_id = master_id
        self.bus = bus
        self.stats = stats or Stats()
        self.firer = firer
        self.status_dir = status_dir
        self._stopping = False
        self._micro_client: Client | None = None
        self._micro_service: Any = None
        self.buffer = EventBuffer(
            settings.buffer_max_events, settings.buffer_max_bytes, settings.buffer_full
        )
        spool = None
        if settings.spool_dir:
            spool = Spool(
                settings.spool_dir,
                settings.spool_max_bytes,
                settings.spool_full,
                fsync_interval=settings.spool_fsync_interval,
            )
        self.backlog = Backlog(self.buffer, spool, self.stats, self._on_backlog_drop)
        inbound_settings: InboundSettings | None = getattr(settings, "inbound", None)
        self.inbound: InboundBridge | None = None
        excluded = settings.excluded_globs
        if inbound_settings is not None:
            # Events the bridge fires must not travel back to NATS.
            excluded = (*excluded, f"{inbound_settings.tag_prefix}*")
            self.inbound = InboundBridge(
                inbound_settings,
                InboundGate(inbound_settings, master_id),
                firer,
                settings.name,
                RateLimitedLog(
                    log, settings.drop_log_interval, prefix=f"salt-nats {settings.name}"
                ),
            )
        self.filter = TagFilter(settings.include, excluded)
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
        self._drop_log = RateLimitedLog(
            log, settings.drop_log_interval, prefix=f"salt-nats {settings.name}"
        )
        self._tasks: list[asyncio.Task[None]] = []
        # True while the publisher task or the bus reader runs a publish loop.
        self._publishing = False
        self._side_tasks: set[asyncio.Task[Any]] = set()
        # JetStream mode: the context of the current client, the inbox prefix of the
        # stream's acknowledgements, and the events published but not yet acknowledged,
        # by reply subject, oldest first.
        self._js: JetStreamContext | None = None
        self._js_client: Client | None = None
        self._ack_prefix = ""
        self._ack_sequence = 0
        self._inflight: dict[str, _Inflight] = {}
        self._js_retry_at = 0.0  # loop.time() before which no stream set-up is tried

    # -- life cycle -----------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop`, then publish what is buffered within the shutdown time."""
        log.info("salt-nats: starting engine %s", self.settings.describe())

        if self.backlog.spool is not None:
            # NOTE: opening reads every segment once; about 0.4 s for 420 MB measured on
            # the 2-core test machine. The bus is not subscribed yet, so nothing waits.
            self.backlog.spool.open()
            if len(self.backlog.spool):
                log.info(
                    "salt-nats %s: %d spooled events from an earlier run will be replayed",
                    self.settings.name,
                    len(self.backlog.spool),
                )

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
        while (
            (len(self.buffer) or self._inflight)
            and loop.time() < drain_until
            and not publisher.done()
            and self.supervisor.connected_client is not None
        ):
            self._wake_publisher()
            await asyncio.sleep(0.01)
        publisher.cancel()

        undelivered = [item.event for item in self._inflight.values()]
        undelivered += self.backlog.drain_memory()
        self._inflight.clear()
        saved = self.backlog.spill(undelivered)
        lost = sum(1 for event in undelivered if event.position is None) - saved
        if saved:
            log.info(
                "salt-nats %s: spooled %d undelivered events for the next start",
                self.settings.name,
                saved,
            )
        if lost:
            self.stats.dropped[DROP_SHUTDOWN] += lost
            log.warning(
                "salt-nats %s: %d buffered events were not published before shutdown",
                self.settings.name,
                lost,
            )
        left_in_spool = self.backlog.spool_records
        try:
            self.backlog.close()
        except OSError as exc:
            log.error("salt-nats %s: closing the spool failed: %s", self.settings.name, exc)
        self._stopping = True
        self._write_heartbeat()
        if self._micro_service is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._micro_service.stop(), 0.2)
        await self.supervisor.close(flush_timeout=deadline - loop.time())
        supervisor.cancel()
        for task in self._side_tasks:
            task.cancel()
        if self.firer is not None:
            self.firer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._drop_log.flush(force=True)
        log.info(
            "salt-nats %s: stopped; received %d, published %d, filtered %d, dropped %s, "
            "acknowledged %d, retried %d, duplicates %d, spooled %d, replayed %d, "
            "left in spool %d",
            self.settings.name,
            self.stats.received,
            self.stats.published,
            self.stats.filtered,
            dict(self.stats.dropped) or 0,
            self.stats.acknowledged,
            self.stats.retried,
            self.stats.duplicates,
            self.stats.spooled,
            self.stats.replayed,
            left_in_spool,
        )

    # -- bus reader -----------------------------------------------------------------

    async def _read_bus(self) -> None:
        stats = self.stats
        allows = self.filter.allows
        while True:
            frames = await self.bus.recv_batch()
            if not frames:
                return  # the bus is closed
            connected = self.supervisor.connected_client is not None
            added = 0
            for frame in frames:
                stats.received += 1
                end = frame.find(TAG_END)
                tag = frame[: end if end >= 0 else len(frame)].decode("utf-8", "surrogateescape")
                if tag == control.STATUS_REQUEST_TAG:
                    self._start_task(self._answer_status(frame), "salt-nats-status-reply")
                if not allows(tag):
                    stats.filtered += 1
                    continue
                event = BufferedEvent(frame, self._nuid.next().decode(), time.monotonic())
                self.backlog.add(event, connected=connected)
                added += 1
            if added:
                await self._publish_from_reader()

    # -- publisher ------------------------------------------------------------------

    def _wake_publisher(self) -> None:
        self._wake.set()

    async def _publish_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._publishing = True
            try:
                await self._publish_buffered()
            finally:
                self._publishing = False

    async def _publish_from_reader(self) -> None:
        """Publish the events the bus reader has just added, or wake the publisher task.

        Publishing here saves a loop turn of the publisher task for each read from
        the bus. The reader must not wait on NATS, so it publishes only while the
        publisher task is idle, and it stops before nats-py would wait for a flush.
        """
        if self._publishing or self._wake.is_set():
            self._wake.set()
            return
        self._publishing = True
        try:
            await self._publish_buffered(inline=True)
        finally:
            self._publishing = False

    async def _publish_buffered(self, inline: bool = False) -> None:
        if self.settings.mode == "jetstream":
            await self._publish_jetstream(inline)
        else:
            await self._publish_core(inline)

    def _fits_pending(self, client: Client, message: EncodedEvent) -> bool:
        """Return True when publishing ``message`` cannot make nats-py wait for a flush.

        nats-py waits for its flusher when its pending buffer passes ``pending_size``;
        half of it leaves room for the headers and the protocol line.
        """
        size = client.pending_data_size + len(message.payload) + len(message.subject)
        return size <= self.settings.pending_size // 2

    async def _publish_core(self, inline: bool = False) -> None:
        """Publish buffered events while the client stays connected.

        ``inline``: called by the bus reader. It publishes at most one batch, stops
        before nats-py would wait for a flush, and wakes the publisher task for the
        rest.
        """
        loop = asyncio.get_running_loop()
        published = 0
        while self.backlog.has_pending():
            client = self.supervisor.connected_client
            if client is None:
                return  # the supervisor wakes the publisher on (re)connect
            if published and published % _PUBLISH_BATCH == 0:
                if inline:
                    self._wake.set()
                    return
                await asyncio.sleep(0)
            publishable = self._next_message(client, inline)
            if publishable is None:
                return
            event, message = publishable

            try:
                await client.publish(message.subject, message.payload, headers=message.headers)
            except _RETRYABLE as exc:
                self.stats.record_error(f"publish failed: {exc!r}")
                self._put_back(event)
                log.debug("salt-nats %s: publish failed (%r); will retry", self.settings.name, exc)
                loop.call_later(0.05, self._wake_publisher)
                return

            self.stats.published += 1
            self.backlog.done(event)
            self._count_truncation(message, client)
            published += 1

    def _next_message(
        self, client: Client, inline: bool
    ) -> tuple[BufferedEvent, EncodedEvent] | None:
        """Take the next event that encodes, or return None when none is to be published now.

        ``inline``: an event that nats-py cannot take without waiting goes back to
        the head of the buffer, and the publisher task is woken for it.
        """
        while True:
            event = self.backlog.next()
            if event is None:
                return None
            message = self._encode(event, client)
            if message is None:
                continue  # counted and logged as dropped
            if inline and not self._fits_pending(client, message):
                self._put_back(event)
                self._wake.set()
                return None
            return event, message

    def _encode(self, event: BufferedEvent, client: Client) -> EncodedEvent | None:
        """Encode one event, or count and log it as dropped and return None."""
        try:
            return self.encoder.encode(event.frame, event.msg_id, client.max_payload)
        except EncodeError as exc:
            self.backlog.discard(event)
            self._count_drop(exc.kind, "%s", str(exc), event=event)
        except Exception as exc:
            # A bug in encoding one event must not stop the engine for all the others.
            log.debug("salt-nats %s: encoding failed", self.settings.name, exc_info=True)
            self.backlog.discard(event)
            self._count_drop(DROP_ENCODE_FAILED, "encoding an event failed: %r", exc, event=event)
        return None

    def _put_back(self, event: BufferedEvent) -> None:
        self.backlog.put_back(event)

    def _on_backlog_drop(self, reason: str, event: BufferedEvent | None, count: int) -> None:
        if event is not None:
            self._count_drop(
                reason,
                "%s; dropped an event (buffer_full: %s, spool_full: %s)",
                "memory buffer full" if reason == DROP_BUFFER_FULL else "spool full",
                self.settings.buffer_full,
                self.settings.spool_full,
                event=event,
            )
            return
        self.stats.dropped[reason] += count
        self.stats.record_error(f"dropped {count} spooled events ({reason})")
        self._drop_log.note(
            reason,
            "salt-nats %s: spool full (%d bytes); dropped the %d oldest spooled events",
            self.settings.name,
            self.settings.spool_max_bytes,
            count,
        )

    # -- JetStream ------------------------------------------------------------------

    async def _prepare_jetstream(self, client: Client) -> JetStreamContext | None:
        """Return the JetStream context of ``client``, setting up the stream once per client."""
        if self._js is not None and self._js_client is client:
            return self._js
        js = client.jetstream(timeout=self.settings.ack_timeout)
        try:
            await ensure_stream(js, self.settings)
            # One subscription takes every acknowledgement: the stream replies to the
            # reply subject of each message, <inbox>.<sequence number>.
            ack_prefix = client.new_inbox()
            await client.subscribe(f"{ack_prefix}.*", cb=self._on_ack)
        except StreamSetupError as exc:
            self.stats.record_error(str(exc))
            self._drop_log.note(
                "stream", "salt-nats %s: %s; events stay buffered", self.settings.name, exc
            )
            return None
        except (nats_errors.Error, js_errors.Error, asyncio.TimeoutError) as exc:
            self.stats.record_error(f"stream set-up failed: {exc!r}")
            self._drop_log.note(
                "stream",
                "salt-nats %s: setting up stream %s failed: %r; retrying",
                self.settings.name,
                self.settings.stream,
                exc,
            )
            return None
        self._js, self._js_client, self._ack_prefix = js, client, ack_prefix
        return js

    async def _publish_jetstream(self, inline: bool = False) -> None:
        """Publish buffered events with acknowledgements, keeping a bounded window in flight.

        ``inline``: as for :meth:`_publish_core`; the stream set-up, which waits on
        the server, is left to the publisher task.
        """
        loop = asyncio.get_running_loop()
        client = self.supervisor.connected_client
        if client is None:
            return
        if inline and (self._js is None or self._js_client is not client):
            self._wake.set()
            return
        if loop.time() < self._js_retry_at:
            return  # a failed stream set-up is tried again once a second
        # The stream is set up on every new connection, before the first event needs it.
        js = await self._prepare_jetstream(client)
        if js is None:
            self._js_retry_at = loop.time() + 1.0
            loop.call_later(1.0, self._wake_publisher)
            return
        published = 0
        while self.backlog.has_pending() and len(self._inflight) < self.settings.max_inflight:
            client = self.supervisor.connected_client
            if client is None or client is not self._js_client:
                return
            if published and published % _PUBLISH_BATCH == 0:
                if inline:
                    self._wake.set()
                    return
                await asyncio.sleep(0)
            publishable = self._next_message(client, inline)
            if publishable is None:
                return
            event, message = publishable

            # NOTE: not JetStreamContext.publish_async: it sends every message in a write
            # of its own and takes a loop turn per message, which kept the engine at
            # 645 events/s where core mode forwarded 1,624 (docs/benchmarks.md). A
            # plain publish with a reply subject lets a burst leave in one write.
            self._ack_sequence += 1
            reply = f"{self._ack_prefix}.{self._ack_sequence}"
            try:
                await client.publish(
                    message.subject, message.payload, reply=reply, headers=message.headers
                )
            except _RETRYABLE as exc:
                self.stats.record_error(f"publish failed: {exc!r}")
                self._put_back(event)
                loop.call_later(0.05, self._wake_publisher)
                return

            self.stats.published += 1
            self._count_truncation(message, client)
            self._inflight[reply] = _Inflight(event, loop.time() + self.settings.ack_timeout)
            published += 1

    async def _on_ack(self, msg: Any) -> None:
        item = self._inflight.pop(msg.subject, None)
        if item is None:
            return  # acknowledged after its timeout; the event was published again
        event = item.event
        error = _ack_error(msg)
        if error is not None:
            self.stats.retried += 1
            self.stats.record_error(f"publish not acknowledged: {error}")
            self._drop_log.note(
                "nack",
                "salt-nats %s: the stream did not store an event (%s); publishing it again",
                self.settings.name,
                error,
            )
            self._put_back(event)
            asyncio.get_running_loop().call_later(0.2, self._wake_publisher)
            return
        self.stats.acknowledged += 1
        self.backlog.done(event)
        if b'"duplicate":true' in msg.data:
            self.stats.duplicates += 1
        if self.backlog.has_pending():
            self._wake_publisher()

    def _expire_inflight(self) -> None:
        """Publish again the events whose acknowledgement is overdue, oldest at the head."""
        now = asyncio.get_running_loop().time()
        expired = [item for item in self._inflight.values() if item.deadline <= now]
        if not expired:
            return
        for reply in [r for r, item in self._inflight.items() if item.deadline <= now]:
            del self._inflight[reply]
        self.stats.retried += len(expired)
        self._drop_log.note(
            "ack_timeout",
            "salt-nats %s: %d events not acknowledged within %.1f s; publishing them again",
            self.settings.name,
            len(expired),
            self.settings.ack_timeout,
        )
        for item in sorted(expired, key=lambda i: i.event.received_at, reverse=True):
            self._put_back(item.event)
        self._wake_publisher()

    def _count_truncation(self, message: Any, client: Client) -> None:
        if not message.truncated_values:
            return
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

    # -- status -----------------------------------------------------------------------

    def state(self) -> str:
        """Return the instance state, one of the ``control.STATE_*`` values."""
        if self._stopping:
            return control.STATE_STOPPED
        state = self.supervisor.state
        if state == control.STATE_CONNECTED:
            waiting = self.buffer.oldest_age(time.monotonic())
            if waiting > 1.0 or self.backlog.spool_records:
                return control.STATE_BUFFERING
        return state

    def report(self) -> dict[str, Any]:
        """Return the status report that the runner, the micro service and heartbeats show."""
        last_error_time = self.stats.last_error_time
        return {
            "instance": self.settings.name,
            "master": self.master_id,
            "state": self.state(),
            "server": self.supervisor.connected_url,
            "mode": self.settings.mode,
            "format": self.settings.format,
            "subject_prefix": self.settings.subject_prefix,
            "pid": os.getpid(),
            "version": __version__,
            "started_at": _iso(self.stats.started_at),
            "buffered": len(self.buffer),
            "buffered_bytes": self.buffer.nbytes,
            "spool_records": self.backlog.spool_records,
            "spool_bytes": self.backlog.spool.nbytes if self.backlog.spool is not None else 0,
            "inflight": len(self._inflight),
            "lag_seconds": round(self.buffer.oldest_age(time.monotonic()), 3),
            **self.stats.snapshot(),
            "inbound": self.inbound.gate.snapshot() if self.inbound is not None else None,
            "last_error_time": _iso(last_error_time) if last_error_time else None,
        }

    async def _answer_status(self, frame: bytes) -> None:
        if self.firer is None:
            return
        try:
            _, data = split_frame(frame)
            request = unpack_data(data)
            request_id = str(request.get("request_id", "")) if isinstance(request, dict) else ""
        except (ValueError, AttributeError):
            request_id = ""
        if not request_id:
            log.debug("salt-nats %s: status request without request_id", self.settings.name)
            return
        await self.firer.fire(self.report(), control.reply_tag(request_id, self.settings.name))

    def _write_heartbeat(self) -> None:
        if not self.status_dir:
            return
        try:
            control.write_heartbeat(self.status_dir, self.settings.name, self.report())
        except OSError as exc:
            self._drop_log.note(
                "heartbeat",
                "salt-nats %s: cannot write the status file in %s: %s",
                self.settings.name,
                self.status_dir,
                exc,
            )

    async def _ensure_micro_service(self) -> None:
        client = self.supervisor.connected_client
        if not self.settings.micro_service or client is None or client is self._micro_client:
            return
        self._micro_client = client
        try:
            self._micro_service = await start_micro_service(
                client, self.master_id, self.settings.name, self.report
            )
        except Exception as exc:
            self._micro_client = None
            self._drop_log.note(
                "micro",
                "salt-nats %s: starting the NATS micro service failed: %r",
                self.settings.name,
                exc,
            )

    async def _ensure_inbound(self) -> None:
        client = self.supervisor.connected_client
        if self.inbound is None or self.firer is None or client is None:
            return
        try:
            await self.inbound.attach(client)
        except Exception as exc:
            self._drop_log.note(
                "inbound_subscribe",
                "salt-nats %s: subscribing the inbound bridge failed: %r; retrying",
                self.settings.name,
                exc,
            )

    def _start_task(self, coroutine: Any, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- bookkeeping ----------------------------------------------------------------

    def _count_drop(self, reason: str, message: str, *args: object, event: BufferedEvent) -> None:
        """Count one dropped event by reason and log it, rate-limited per reason."""
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
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time()
        ticks = 0
        while True:
            if loop.time() >= next_heartbeat:
                self._write_heartbeat()
                next_heartbeat = loop.time() + self.settings.heartbeat_interval
            await asyncio.sleep(0.1)
            ticks += 1
            if self._inflight:
                self._expire_inflight()
            try:
                self.backlog.flush()
            except OSError as exc:
                self._drop_log.note(
                    "spool_io",
                    "salt-nats %s: writing the spool failed: %s",
                    self.settings.name,
                    exc,
                )
            if ticks % 10 == 0:
                self._drop_log.flush()
                await self._ensure_micro_service()
                await self._ensure_inbound()
