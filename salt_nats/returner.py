"""Settings and publishing for the ``nats`` returner.

The returner has two publishing uses, and :mod:`salt_nats.jobcache` adds the third:

* :func:`publish_return` publishes one job return on
  ``<subject_prefix>.<minion id>.<function>.<jid>`` and waits until the server has it.
  It serves ``--return nats`` and the minion option ``return: nats``.
* :func:`event_return` publishes master events on ``<event_subject_prefix>.<tag>``
  (the engine's subjects). Salt's event return process drops a whole batch when a
  returner raises, so this function never raises. It keeps events in a bounded
  in-process buffer while NATS is unreachable, and publishes them on the next call
  or as soon as the client reconnects.

Payloads and headers are the engine's (:class:`salt_nats.codec.EventEncoder`), including
its size policy for messages over the server's ``max_payload``.

Options come from Salt's returner configuration and are parsed by
:func:`parse_returner_settings`. The options shared with the engine follow the
engine's rules (:func:`salt_nats.config.parse_engine_settings`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import difflib
import hashlib
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nats.nuid import NUID

from salt_nats import codec, config, subjects, sync
from salt_nats.buffer import BufferedEvent, EventBuffer
from salt_nats.codec import EncodedEvent, EncodeError, EventEncoder
from salt_nats.config import AUTH_OPTIONS, ConfigError, EngineSettings
from salt_nats.connection import connect_options
from salt_nats.secrets import resolve_secrets
from salt_nats.status import RateLimitedLog

log = logging.getLogger(__name__)

# Engine options that the returner reads as well, parsed with the engine's rules.
SHARED_OPTIONS = (
    "servers",
    "subject_prefix",
    "format",
    "oversize",
    "max_subject_bytes",
    "connect_timeout",
    "reconnect_time_wait",
    "ping_interval",
    "max_outstanding_pings",
    "flush_timeout",
    "pending_size",
    "buffer_max_events",
    "buffer_max_bytes",
    "buffer_full",
    "drop_log_interval",
    *AUTH_OPTIONS,
)

# Help text for shared options whose meaning differs from the engine's.
_SHARED_HELP = {
    "subject_prefix": (
        "Subject prefix of job returns; a return is published on "
        "`<subject_prefix>.<minion id>.<function>.<jid>`, each field encoded as one token."
    ),
    "max_subject_bytes": (
        "Maximum subject length, in bytes. A return whose subject would be longer is "
        "not published, and the error is logged with the jid."
    ),
    "buffer_max_events": (
        "Maximum number of events that `event_return` holds in memory while NATS is unreachable."
    ),
    "buffer_max_bytes": (
        "Maximum bytes of packed events that `event_return` holds in memory; accepts "
        "`64MiB`, `512KB` and the like (K, M and G are powers of 1024)."
    ),
    "buffer_full": (
        "Which event `event_return` drops when its buffer is full: `drop_oldest` or "
        "`drop_newest`. Drops are counted and logged."
    ),
    "pending_size": "Size of nats-py's own outgoing buffer, in bytes.",
    "oversize": (
        "What to do with a return or event larger than the server's `max_payload` (payload "
        "plus headers): `truncate` replaces the largest values with a marker string and "
        "sets the `Salt-Nats-Truncated` header; `drop` skips it. Either way the jid or the "
        "tag is logged. The job cache never truncates; it stores large values in chunks."
    ),
    "flush_timeout": (
        "Longest wait for the server to confirm the events that `event_return` published, "
        "in seconds. Unconfirmed events stay buffered and are published again."
    ),
    "reconnect_time_wait": (
        "Wait between two connect attempts to the same server, in seconds. Each process "
        "keeps trying in the background; a call waits only until its `timeout`."
    ),
}

_BUCKET_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
KV_STORAGES = ("file", "memory")


@dataclass(frozen=True)
class _OwnOption:
    default: Any
    kind: str
    help: str
    parse: Callable[[str, Any], Any]


def _parse_timeout(key: str, value: Any) -> float:
    return config._parse_seconds(key, value, 0.1, 300.0)


def _parse_event_prefix(key: str, value: Any) -> str:
    try:
        return config.parse_option("subject_prefix", value)
    except ConfigError as exc:
        raise ConfigError(key, value, exc.problem, exc.fix) from None


def _parse_bucket(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _BUCKET_RE.match(value):
        raise ConfigError(
            key,
            value,
            "a bucket name may contain only letters, digits, '_' and '-'",
            "choose a name such as salt_jobs",
        )
    return value


def _parse_replicas(key: str, value: Any) -> int:
    return config._parse_int(key, value, 1, 5)


def _parse_storage(key: str, value: Any) -> str:
    return config._parse_choice(key, value, KV_STORAGES)


# Options of the returner alone, in the order of the documentation table.
_OWN_OPTIONS: dict[str, _OwnOption] = {
    "timeout": _OwnOption(
        5.0,
        "seconds, 0.1 to 300",
        "Deadline of one returner call, in seconds, including the wait for a connection. "
        "After one call of a process timed out waiting for NATS, later calls of that "
        "process fail at once until the client connects.",
        _parse_timeout,
    ),
    "event_subject_prefix": _OwnOption(
        subjects.DEFAULT_EVENT_PREFIX,
        "subject",
        "Subject prefix of `event_return`; an event with tag T is published on "
        "`<event_subject_prefix>.<encoded T>`, as the engine does.",
        _parse_event_prefix,
    ),
    "kv_jobs_bucket": _OwnOption(
        "salt_jobs",
        "bucket name",
        "Key-value bucket of the master job cache that stores job markers, loads, "
        "minion lists and end times.",
        _parse_bucket,
    ),
    "kv_returns_bucket": _OwnOption(
        "salt_job_returns",
        "bucket name",
        "Key-value bucket of the master job cache that stores each minion's return.",
        _parse_bucket,
    ),
    "kv_replicas": _OwnOption(
        1,
        "integer, 1 to 5",
        "Replicas of each job cache bucket in a JetStream cluster, used when the "
        "returner creates the buckets.",
        _parse_replicas,
    ),
    "kv_storage": _OwnOption(
        "file",
        "one of: " + ", ".join(KV_STORAGES),
        "Storage of the job cache buckets, used when the returner creates them.",
        _parse_storage,
    ),
}

# The option names to pass to salt.returners.get_returner_options().
OPTION_NAMES = SHARED_OPTIONS + tuple(_OWN_OPTIONS)


@dataclass(frozen=True)
class ReturnerSettings:
    """Settings of the returner: connection and encoding options, and its own options."""

    connection: EngineSettings
    timeout: float = _OWN_OPTIONS["timeout"].default
    event_subject_prefix: str = _OWN_OPTIONS["event_subject_prefix"].default
    kv_jobs_bucket: str = _OWN_OPTIONS["kv_jobs_bucket"].default
    kv_returns_bucket: str = _OWN_OPTIONS["kv_returns_bucket"].default
    kv_replicas: int = _OWN_OPTIONS["kv_replicas"].default
    kv_storage: str = _OWN_OPTIONS["kv_storage"].default


def parse_returner_settings(options: Mapping[str, Any]) -> tuple[ReturnerSettings, list[str]]:
    """Build :class:`ReturnerSettings` from returner options.

    Returns the settings and the sorted names of the options it does not know, which
    the caller should log: ``--return_kwargs`` can carry options for other returners
    of the same job. Raises :class:`ConfigError` for the first invalid value.
    """
    shared: dict[str, Any] = {}
    own: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in options.items():
        if key in SHARED_OPTIONS:
            shared[key] = value
        elif key in _OWN_OPTIONS:
            own[key] = value
        else:
            unknown.append(str(key))

    shared.setdefault("subject_prefix", subjects.DEFAULT_RETURN_PREFIX)
    connection = config.parse_engine_settings(shared, default_name="returner")
    values = {key: _OWN_OPTIONS[key].parse(key, value) for key, value in own.items()}
    settings = ReturnerSettings(connection=connection, **values)

    if settings.kv_jobs_bucket == settings.kv_returns_bucket:
        raise ConfigError(
            "kv_returns_bucket",
            settings.kv_returns_bucket,
            "the same bucket as kv_jobs_bucket",
            "give the two buckets different names",
        )
    return settings, sorted(unknown)


def load_settings(
    options: Mapping[str, Any], salt_opts: Mapping[str, Any] | None
) -> ReturnerSettings:
    """Parse returner options, log unknown names and resolve ``sdb://`` secrets.

    ``salt_opts`` is the calling process's Salt config, which contains the sdb profiles.
    Raises :class:`ConfigError` for an invalid option, a secret that cannot be
    resolved or an authentication or TLS file that cannot be used.
    """
    settings, unknown = parse_returner_settings(options)
    warn_unknown_options(unknown)
    connection = resolve_secrets(settings.connection, salt_opts)
    if connection is not settings.connection:
        settings = dataclasses.replace(settings, connection=connection)
    return settings


_warned_unknown: set[str] = set()


def warn_unknown_options(names: Iterable[str]) -> None:
    """Log each unknown option name once per process, with the closest known name."""
    for name in names:
        if name in _warned_unknown:
            continue
        _warned_unknown.add(name)
        guess = difflib.get_close_matches(name, OPTION_NAMES, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        log.warning("salt-nats returner: ignoring unknown option %r%s", name, hint)


def options_reference() -> str:
    """Return the Markdown table of every returner option, its type, default and meaning."""
    engine_fields = {f.name: f for f in dataclasses.fields(EngineSettings)}
    lines = ["| Option | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for name in SHARED_OPTIONS:
        field = engine_fields[name]
        default = subjects.DEFAULT_RETURN_PREFIX if name == "subject_prefix" else field.default
        help_text = _SHARED_HELP.get(name, field.metadata["help"])
        lines.append(f"| `{name}` | {field.metadata['kind']} | {_show(default)} | {help_text} |")
    for name, option in _OWN_OPTIONS.items():
        lines.append(f"| `{name}` | {option.kind} | {_show(option.default)} | {option.help} |")
    return "\n".join(lines) + "\n"


def _show(default: Any) -> str:
    if default == "":
        return "(none)"
    if isinstance(default, tuple):
        return "`[" + ", ".join(f'"{item}"' for item in default) + "]`"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return f"`{default}`"


# -- packing Salt data ------------------------------------------------------------

_MSGPACK_INT_MIN = -(2**63)
_MSGPACK_INT_MAX = 2**64 - 1


def pack_salt_data(data: Any) -> bytes:
    """Pack Salt data with :func:`salt_nats.codec.pack_data`, accepting Salt's own types.

    Data from the wire is plain already. Data built inside a Salt process may contain
    mappings and sets of Salt's own classes, dates, Salt's constants or integers
    beyond 64 bits. Those are converted as ``salt.payload`` converts them. Raises
    TypeError for a value of any other type.
    """
    try:
        return codec.pack_data(data)
    except (TypeError, OverflowError):
        return codec.pack_data(_plain(data))


def _plain(value: Any) -> Any:
    if isinstance(value, (str, bytes, bool, float)) or value is None:
        return value
    if isinstance(value, int):
        if _MSGPACK_INT_MIN <= value <= _MSGPACK_INT_MAX:
            return value
        return str(value)  # salt.payload writes such integers as strings too
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, datetime.date):
        # Salt writes a date in its datetime format, so it reads back as a datetime.
        return datetime.datetime.combine(value, datetime.time())
    if type(value).__name__ == "_Constant" and hasattr(value, "name"):
        return codec.SaltConstant(value.name, _plain(getattr(value, "value", None)))
    return value


# -- the shared client ----------------------------------------------------------------


def shared_client_for(settings: ReturnerSettings, node_id: str) -> sync.SharedClient:
    """Return this process's client for the connection settings; run on the loop."""
    options = connect_options(settings.connection, f"salt-nats returner@{node_id}")
    return sync.shared_client(
        sync.get_loop(),
        options,
        label="salt-nats returner",
        drop_log_interval=settings.connection.drop_log_interval,
    )


def describe_error(exc: BaseException) -> str:
    """Return the exception's message, prefixed by its type unless the message names it."""
    text = str(exc)
    name = type(exc).__name__
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


def _remaining(deadline: float) -> float:
    return max(deadline - asyncio.get_running_loop().time(), 0.05)


# -- job returns --------------------------------------------------------------------


def return_tag(jid: str, minion_id: str) -> str:
    """Return the tag Salt gives a job return event: ``salt/job/<jid>/ret/<minion id>``."""
    return f"salt/job/{jid}/ret/{minion_id}"


def return_msg_id(jid: str, minion_id: str) -> str:
    """Return the ``Nats-Msg-Id`` of a job return: 32 hex digits of a SHA-256.

    The same return sent twice gets the same id, so a JetStream stream stores it once.
    """
    digest = hashlib.sha256(f"{jid}\n{minion_id}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def build_return_message(
    settings: ReturnerSettings,
    ret: Mapping[str, Any],
    master_id: str | None,
    max_payload: int,
) -> EncodedEvent:
    """Encode one job return as a NATS message on its return subject.

    The payload and headers are those of the engine's job return event. ``Salt-Master``
    is left out when ``master_id`` is unknown, as on a minion. ``ret_kwargs`` is
    removed from the data because it can carry returner credentials. Raises
    :class:`EncodeError` when the return cannot be encoded or, with ``oversize: drop``,
    is too large, and ValueError when its subject would be too long.
    """
    connection = settings.connection
    jid = str(ret["jid"])
    minion_id = str(ret["id"])
    fun = ret.get("fun", "")
    fun_text = ",".join(str(part) for part in fun) if isinstance(fun, (list, tuple)) else str(fun)

    subject = subjects.return_subject(
        minion_id, fun_text, jid, connection.subject_prefix, connection.max_subject_bytes
    )
    tag = return_tag(jid, minion_id)
    data = {key: value for key, value in ret.items() if key != "ret_kwargs"}
    frame = _frame(tag, data)

    encoder = EventEncoder(
        subject_prefix=connection.subject_prefix,
        master_id=master_id or "",
        payload_format=connection.format,
        oversize=connection.oversize,
        max_subject_bytes=connection.max_subject_bytes,
    )
    encoded = encoder.encode(frame, return_msg_id(jid, minion_id), max_payload)
    headers = dict(encoded.headers)
    if not master_id:
        headers.pop(codec.HEADER_MASTER, None)
    return EncodedEvent(subject, encoded.payload, headers, encoded.truncated_values)


def _frame(tag: str, data: Any) -> bytes:
    try:
        packed = pack_salt_data(data)
        tag_bytes = tag.encode("utf-8", "surrogateescape")
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError("encode_failed", f"data cannot be packed: {exc}") from exc
    return tag_bytes + codec.TAG_END + packed


async def _publish_return(
    settings: ReturnerSettings, ret: Mapping[str, Any], master_id: str | None, node_id: str
) -> EncodedEvent:
    deadline = asyncio.get_running_loop().time() + settings.timeout
    shared = shared_client_for(settings, node_id)
    client = await shared.wait_connected(deadline)

    message = build_return_message(settings, ret, master_id, client.max_payload)
    await client.publish(message.subject, message.payload, headers=message.headers)
    # The flush round trip confirms that the server has the message before a
    # short-lived job process exits.
    await client.flush(timeout=_remaining(deadline))
    return message


def publish_return(
    settings: ReturnerSettings,
    ret: Mapping[str, Any],
    *,
    master_id: str | None,
    node_id: str,
) -> bool:
    """Publish one job return and wait until the server has it; return True on success.

    Waits at most ``settings.timeout`` seconds. Every failure is logged with the jid
    and the minion id, and nothing is raised.
    """
    jid = ret.get("jid")
    minion_id = ret.get("id")
    if jid is None or minion_id is None:
        log.error("salt-nats returner: return not published: it has no 'jid' or no 'id'")
        return False

    try:
        message = sync.get_loop().run(
            _publish_return, settings, ret, master_id, node_id, timeout=settings.timeout
        )
    except EncodeError as exc:
        log.error(
            "salt-nats returner: return of job %s from minion %s not published: %s",
            jid,
            minion_id,
            exc,
        )
        return False
    except Exception as exc:  # NATS errors, timeouts and subjects that are too long
        log.error(
            "salt-nats returner: return of job %s from minion %s not published: %s",
            jid,
            minion_id,
            describe_error(exc),
        )
        return False

    if message.truncated_values:
        log.warning(
            "salt-nats returner: return of job %s from minion %s exceeded max_payload; "
            "%d values were replaced by markers",
            jid,
            minion_id,
            message.truncated_values,
        )
    log.debug("salt-nats returner: published the return of job %s on %s", jid, message.subject)
    return True


# -- event_return -------------------------------------------------------------------

# Events published before one flush round trip.
_BATCH_EVENTS = 500


class EventReturnQueue:
    """The per-process buffer of events that ``event_return`` has not published yet.

    :meth:`add` runs in Salt's thread and only packs and buffers the events. The
    publishing runs on the background loop and is started by ``event_return`` and
    by every connect and reconnect of the client. An event leaves the buffer only
    after the flush round trip that follows its publish succeeds, so every buffered
    event is published at least once. After a failed flush it may be published
    twice, with the same ``Nats-Msg-Id``.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._nuid = NUID()
        self._buffer: EventBuffer | None = None
        self._settings: ReturnerSettings | None = None
        self._encoder: EventEncoder | None = None
        self._shared: sync.SharedClient | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._drain_again = False
        self._backlog_since: float | None = None
        self.published = 0
        self.dropped: Counter[str] = Counter()
        self._log = RateLimitedLog(log, 60.0, prefix="salt-nats event_return")

    def __len__(self) -> int:
        with self._lock:
            return len(self._buffer) if self._buffer is not None else 0

    def configure(self, settings: ReturnerSettings, master_id: str) -> None:
        """Apply the current settings; a changed buffer limit keeps the buffered events."""
        with self._lock:
            if settings == self._settings:
                return
            connection = settings.connection
            old_buffer = self._buffer
            self._buffer = EventBuffer(
                connection.buffer_max_events, connection.buffer_max_bytes, connection.buffer_full
            )
            while old_buffer is not None and len(old_buffer):
                self._drop_all(self._buffer.put(old_buffer.pop()), "buffer_full")
            self._encoder = EventEncoder(
                subject_prefix=settings.event_subject_prefix,
                master_id=master_id,
                payload_format=connection.format,
                oversize=connection.oversize,
                max_subject_bytes=connection.max_subject_bytes,
            )
            self._log.interval = connection.drop_log_interval
            self._settings = settings

    def add(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Pack and buffer events given as ``{"tag": ..., "data": ...}``; never raises."""
        frames = []
        for event in events:
            tag = event.get("tag") if isinstance(event, Mapping) else None
            if not isinstance(tag, str):
                self._drop("invalid_event", "an event without a string tag")
                continue
            try:
                frames.append(_frame(tag, event.get("data")))
            except EncodeError as exc:
                self._drop("encode_failed", f"event {tag!r}: {exc}")

        now = time.monotonic()
        with self._lock:
            assert self._buffer is not None, "configure() must run before add()"
            for frame in frames:
                dropped = self._buffer.put(BufferedEvent(frame, self._nuid.next().decode(), now))
                self._drop_all(dropped, "buffer_full")

    def bind(self, shared: sync.SharedClient) -> None:
        """Publish through ``shared`` from now on, and after each of its reconnects."""
        if shared is not self._shared:
            self._shared = shared
            shared.add_ready_callback(self.request_drain)

    def request_drain(self) -> asyncio.Task[None]:
        """Start publishing the buffer unless that is running already; run on the loop."""
        if self._drain_task is not None and not self._drain_task.done():
            self._drain_again = True
            return self._drain_task
        self._drain_task = asyncio.get_running_loop().create_task(self._drain_until_idle())
        return self._drain_task

    def note_unreachable(self, error: Exception) -> None:
        """Log, at most once per interval, that events wait for NATS."""
        with self._lock:
            if self._backlog_since is None:
                self._backlog_since = time.monotonic()
            self._log.note(
                "unreachable",
                "salt-nats event_return: %s; %d events are buffered and published when it connects",
                error,
                len(self),
            )

    async def _drain_until_idle(self) -> None:
        while True:
            self._drain_again = False
            await self._drain()
            if not self._drain_again:
                return

    async def _drain(self) -> None:
        while True:
            shared = self._shared
            client = shared.connected_client() if shared is not None else None
            if client is None:
                return
            with self._lock:
                batch = [self._buffer.pop() for _ in range(min(_BATCH_EVENTS, len(self._buffer)))]
                encoder = self._encoder
                flush_timeout = self._settings.connection.flush_timeout
            if not batch:
                self._log_backlog_cleared()
                return

            published: list[BufferedEvent] = []
            handled = 0  # events of the batch that were published or dropped
            try:
                for event in batch:
                    try:
                        message = encoder.encode(event.frame, event.msg_id, client.max_payload)
                    except Exception as exc:  # an event that cannot be sent must not block the rest
                        kind = exc.kind if isinstance(exc, EncodeError) else "encode_failed"
                        self._drop(kind, f"event {_tag_of(event)!r}: {exc}")
                        handled += 1
                        continue
                    await client.publish(message.subject, message.payload, headers=message.headers)
                    published.append(event)
                    handled += 1
                await client.flush(timeout=flush_timeout)
            except BaseException as exc:
                # Unconfirmed and unsent events go back to the head of the buffer in
                # their order, to be published again.
                self._put_back(published + batch[handled:])
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if self._backlog_since is None:
                    self._backlog_since = time.monotonic()
                self._log.note(
                    "publish_failed",
                    "salt-nats event_return: publishing %d events failed: %r; they stay "
                    "buffered and are published again",
                    len(published),
                    exc,
                )
                return
            self.published += len(published)

    def _put_back(self, events: list[BufferedEvent]) -> None:
        with self._lock:
            for event in reversed(events):
                self._drop_all(self._buffer.put_back(event), "buffer_full")

    def _log_backlog_cleared(self) -> None:
        if self._backlog_since is not None:
            log.info(
                "salt-nats event_return: published every buffered event after %.1f s",
                time.monotonic() - self._backlog_since,
            )
            self._backlog_since = None

    def _drop_all(self, events: list[BufferedEvent], kind: str) -> None:
        for event in events:
            self._drop(kind, f"event {_tag_of(event)!r}")

    def _drop(self, kind: str, what: str) -> None:
        with self._lock:
            self.dropped[kind] += 1
            self._log.note(
                kind,
                "salt-nats event_return: dropped %s (%s); %d dropped for this reason so far",
                what,
                kind,
                self.dropped[kind],
            )


def _tag_of(event: BufferedEvent) -> str:
    return event.frame.partition(codec.TAG_END)[0].decode("utf-8", "replace")


def event_queue() -> EventReturnQueue:
    """Return this process's :class:`EventReturnQueue`."""
    resources = sync.get_loop().resources
    queue = resources.get("event_return_queue")
    if queue is None:
        queue = resources.setdefault("event_return_queue", EventReturnQueue())
    return queue


async def _publish_buffered(
    queue: EventReturnQueue, settings: ReturnerSettings, node_id: str
) -> None:
    deadline = asyncio.get_running_loop().time() + settings.timeout
    shared = shared_client_for(settings, node_id)
    queue.bind(shared)
    try:
        await shared.wait_connected(deadline)
    except sync.NotConnectedError as exc:
        queue.note_unreachable(exc)
        return
    await asyncio.wait_for(asyncio.shield(queue.request_drain()), _remaining(deadline))


_invalid_config_log = RateLimitedLog(log, 60.0, level=logging.ERROR, prefix="salt-nats")


def event_return(
    settings: ReturnerSettings | ConfigError,
    events: Iterable[Mapping[str, Any]],
    *,
    master_id: str,
) -> None:
    """Buffer ``events`` and publish the buffer, waiting at most ``settings.timeout``.

    Never raises. Events that are not published by the deadline stay buffered for the
    next call or the next reconnect. With invalid settings (a :class:`ConfigError`)
    the events are dropped, and the error is logged at most once a minute.
    """
    if isinstance(settings, ConfigError):
        _invalid_config_log.note(
            "invalid_config",
            "salt-nats event_return: %d events dropped: %s",
            len(list(events)),
            settings,
        )
        return

    try:
        queue = event_queue()
        queue.configure(settings, master_id)
        queue.add(events)
        sync.get_loop().run(
            _publish_buffered,
            queue,
            settings,
            master_id,
            timeout=settings.timeout,
            cancel_on_timeout=False,
        )
    except (TimeoutError, asyncio.TimeoutError):
        queue.note_unreachable(
            TimeoutError(f"publishing did not finish within {settings.timeout:.1f} s")
        )
    except Exception as exc:  # keeps Salt from dropping the batch
        log.exception("salt-nats event_return: publishing failed: %r", exc)
