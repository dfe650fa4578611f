"""Building blocks for programs that read salt-nats events: filters, decoding, output, replay.

The ``salt-nats tail`` and ``salt-nats replay`` commands are built from these pieces,
and other consumers can reuse them:

* :class:`EventFilter` contains the ``--tag``, ``--minion``, ``--function`` and
  ``--jid`` filters. :func:`subscription_subjects` turns it into the narrowest NATS subjects
  that still receive every matching event, and :meth:`EventFilter.matches` checks
  each decoded event for what a subject cannot express.
* :func:`decode_event` turns a NATS message into an :class:`Event` whose data is
  JSON-safe, and :func:`render_text` and :func:`render_json` format it.
* :func:`parse_time` reads ``--since`` and ``--until`` values.
* :func:`replay_messages` reads a JetStream stream back in order.

Only :func:`replay_messages` talks to NATS. Everything else is pure.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, TextIO

from nats import errors as nats_errors
from nats.aio.msg import Msg
from nats.js import api as js_api
from nats.js import errors as js_errors
from nats.js.client import JetStreamContext
from nats.nuid import NUID

from salt_nats.codec import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_MSGPACK,
    HEADER_CONTENT_TYPE,
    HEADER_ORIGIN,
    decode_payload,
    encode_json,
    unquote_id,
)
from salt_nats.subjects import (
    DEFAULT_EVENT_PREFIX,
    DEFAULT_MAX_SUBJECT_BYTES,
    tag_from_message,
    tag_glob_to_subject,
    validate_subject_settings,
)

log = logging.getLogger(__name__)

DEFAULT_STREAM = "SALT_EVENTS"

# Tags of the form salt/<kind>/<jid>/... carry a jid: `salt` jobs and runner jobs.
JOB_TAG_KINDS = ("job", "run")

_GLOB_CHARACTERS = frozenset("*?[")


class FilterError(ValueError):
    """A filter value is invalid, or the filters together can match no event."""


class StreamNotFoundError(LookupError):
    """The JetStream stream to replay does not exist."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.stream = stream


class ReplayError(RuntimeError):
    """Reading the stream back failed, or stopped before it reached its end."""


# -- filters ------------------------------------------------------------------------


def validate_glob(glob: str) -> str:
    """Check a tag, minion or function glob in :mod:`fnmatch` syntax and return it.

    fnmatch reads a ``[`` without a closing ``]`` as a literal character, which is
    almost always a typing error, so this raises ValueError for it instead.
    """
    index = 0
    while index < len(glob):
        if glob[index] != "[":
            index += 1
            continue

        # Find the end of the character set as fnmatch does: a leading "!" negates
        # it, and a "]" right after "[" or "[!" is a member, not the end.
        end = index + 1
        if end < len(glob) and glob[end] == "!":
            end += 1
        if end < len(glob) and glob[end] == "]":
            end += 1
        while end < len(glob) and glob[end] != "]":
            end += 1
        if end >= len(glob):
            raise ValueError(
                f"invalid glob {glob!r}: '[' at index {index} has no closing ']'; "
                "write a literal '[' as '[[]'"
            )
        index = end + 1
    return glob


def job_jid(tag: str) -> str | None:
    """Return the jid of a ``salt/job/<jid>/...`` or ``salt/run/<jid>/...`` tag, else None."""
    segments = tag.split("/", 3)
    if len(segments) >= 3 and segments[0] == "salt" and segments[1] in JOB_TAG_KINDS:
        return segments[2]
    return None


@dataclass(frozen=True)
class EventFilter:
    """The event filters of a consumer. Each field is a tuple of alternatives.

    An event must match every non-empty field, and within a field any one value.
    ``tags``, ``minions`` and ``functions`` are fnmatch globs, and ``jids`` are
    compared as they are.
    """

    tags: tuple[str, ...] = ()
    minions: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    jids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("tags", "minions", "functions"):
            for glob in getattr(self, name):
                try:
                    validate_glob(glob)
                except ValueError as error:
                    raise FilterError(str(error)) from None

    @property
    def is_empty(self) -> bool:
        """True when no filter is set, so that every event matches."""
        return not (self.tags or self.minions or self.functions or self.jids)

    def matches(self, event: Event) -> bool:
        """Return whether a decoded event passes every filter.

        An event whose tag or data could not be decoded passes only an empty filter.
        """
        if self.is_empty:
            return True
        if event.tag is None or event.error is not None:
            return False

        if self.tags and not any(fnmatchcase(event.tag, glob) for glob in self.tags):
            return False
        if self.jids and job_jid(event.tag) not in self.jids:
            return False
        if self.minions and not _any_glob_matches(event.minion_ids(), self.minions):
            return False
        if self.functions:
            function = event.data.get("fun") if isinstance(event.data, dict) else None
            if not isinstance(function, str):
                return False
            if not _any_glob_matches([function], self.functions):
                return False
        return True


def _any_glob_matches(values: Iterable[str], globs: Sequence[str]) -> bool:
    return any(fnmatchcase(value, glob) for value in values for glob in globs)


def subscription_subjects(
    event_filter: EventFilter,
    prefix: str = DEFAULT_EVENT_PREFIX,
    max_subject_bytes: int = DEFAULT_MAX_SUBJECT_BYTES,
) -> list[str]:
    """Return the NATS subjects that receive every event that ``event_filter`` can match.

    Tag globs and jids narrow the subjects. Minion ids and functions sit in headers
    and data, never in every subject, so they are left to :meth:`EventFilter.matches`.
    The subjects never overlap, so no message arrives twice and a JetStream consumer
    accepts them as its filter subjects. Raises ValueError for an invalid prefix or
    limit, and :class:`FilterError` when the tag globs and the jids exclude each other.
    """
    validate_subject_settings(prefix, max_subject_bytes)

    candidates = [
        tag_glob_to_subject(glob, prefix, max_subject_bytes)[0] for glob in event_filter.tags
    ] or [f"{prefix}.>"]

    if event_filter.jids:
        jid_subjects = [
            _jid_subject(jid, kind, prefix, max_subject_bytes)
            for jid in event_filter.jids
            for kind in JOB_TAG_KINDS
        ]
        candidates = [
            common
            for tag_subject in candidates
            for jid_subject in jid_subjects
            if (common := intersect_subjects(tag_subject, jid_subject)) is not None
        ]
        if not candidates:
            raise FilterError(
                f"no event can match both --tag {' '.join(event_filter.tags)} and --jid "
                f"{' '.join(event_filter.jids)}: a jid filter keeps only tags under "
                "salt/job/<jid>/ and salt/run/<jid>/"
            )

    return merge_subjects(candidates)


def _jid_subject(jid: str, kind: str, prefix: str, max_subject_bytes: int) -> str:
    if "/" in jid or _GLOB_CHARACTERS.intersection(jid):
        # Such a jid cannot form a literal glob, so subscribe to every job of this
        # kind and leave the comparison to EventFilter.matches.
        return f"{prefix}.salt.{kind}.>"
    return tag_glob_to_subject(f"salt/{kind}/{jid}/*", prefix, max_subject_bytes)[0]


def intersect_subjects(first: str, second: str) -> str | None:
    """Return the subject pattern that matches exactly what both patterns match.

    Returns None when no subject matches both, for example ``a.b`` and ``a.c``.
    """
    first_tokens = first.split(".")
    second_tokens = second.split(".")
    common: list[str] = []
    for index in range(max(len(first_tokens), len(second_tokens))):
        token = first_tokens[index] if index < len(first_tokens) else None
        other = second_tokens[index] if index < len(second_tokens) else None

        if token == ">":
            rest = second_tokens[index:]
            return ".".join(common + rest) if rest else None
        if other == ">":
            rest = first_tokens[index:]
            return ".".join(common + rest) if rest else None
        if token is None or other is None:
            return None

        if token == "*":
            common.append(other)
        elif other == "*" or token == other:
            common.append(token)
        else:
            return None
    return ".".join(common)


def subject_covers(general: str, specific: str) -> bool:
    """Return whether every subject that ``specific`` matches also matches ``general``."""
    general_tokens = general.split(".")
    specific_tokens = specific.split(".")
    for index, token in enumerate(general_tokens):
        if token == ">":
            return len(specific_tokens) > index
        if index >= len(specific_tokens) or specific_tokens[index] == ">":
            return False
        if token != "*" and token != specific_tokens[index]:
            return False
    return len(general_tokens) == len(specific_tokens)


def _generalize(first: str, second: str) -> str:
    # The narrowest pattern built token by token that covers both overlapping patterns.
    first_tokens = first.split(".")
    second_tokens = second.split(".")
    tokens: list[str] = []
    for index in range(max(len(first_tokens), len(second_tokens))):
        if index >= len(first_tokens) or index >= len(second_tokens):
            # One pattern has fewer tokens, so the last shared position must also
            # match the end of that pattern.
            tokens[-1] = ">"
            break
        token, other = first_tokens[index], second_tokens[index]
        if ">" in (token, other):
            tokens.append(">")
            break
        tokens.append(token if token == other else "*")
    return ".".join(tokens)


def merge_subjects(subjects: Iterable[str]) -> list[str]:
    """Return subject patterns that match the same subjects and never overlap.

    A pattern that another one covers is dropped. Two patterns that overlap only in
    part are replaced by one pattern that covers both, so the result may match more
    than the input and the consumer must still filter locally.
    """
    merged: list[str] = []
    pending = list(dict.fromkeys(subjects))
    pending.reverse()
    while pending:
        subject = pending.pop()
        if any(subject_covers(kept, subject) for kept in merged):
            continue
        merged = [kept for kept in merged if not subject_covers(subject, kept)]

        overlapping = next(
            (kept for kept in merged if intersect_subjects(kept, subject) is not None), None
        )
        if overlapping is None:
            merged.append(subject)
        else:
            merged.remove(overlapping)
            pending.append(_generalize(overlapping, subject))
    return merged


# -- decoding -----------------------------------------------------------------------


@dataclass
class Event:
    """A decoded NATS message: its tag, headers and JSON-safe data.

    ``data`` keeps the payload's JSON encoding of values that JSON cannot hold
    (``{"$bytes": ...}`` and the like, see :mod:`salt_nats.codec`), so it can be
    written as JSON unchanged. ``error`` is the reason why the tag or the payload could
    not be decoded, and ``tag`` or ``data`` is None then. ``stream_seq`` and ``time``
    are set for messages read from a JetStream stream.
    """

    subject: str
    headers: dict[str, str]
    tag: str | None
    data: Any = None
    error: str | None = None
    stream_seq: int | None = None
    time: datetime.datetime | None = None

    def minion_ids(self) -> list[str]:
        """Return the minion ids the event names as its origin.

        Those are the ``Salt-Origin`` header, the data's ``id`` and, for a job
        return ``salt/job/<jid>/ret/<minion id>``, the tag's last segment.
        """
        ids = []
        origin = self.headers.get(HEADER_ORIGIN)
        if origin:
            ids.append(unquote_id(origin))
        if isinstance(self.data, dict) and isinstance(self.data.get("id"), str):
            ids.append(self.data["id"])
        if self.tag is not None:
            segments = self.tag.split("/")
            if len(segments) == 5 and segments[:2] == ["salt", "job"] and segments[3] == "ret":
                ids.append(segments[4])
        return ids


def decode_event(
    subject: str,
    headers: Mapping[str, str] | None,
    payload: bytes,
    prefix: str = DEFAULT_EVENT_PREFIX,
    *,
    stream_seq: int | None = None,
    time: datetime.datetime | None = None,
) -> Event:
    """Decode a message published by the engine into an :class:`Event`.

    A subject, header or payload that does not decode, or is nested too deeply to
    parse, raises nothing. The reason goes into ``Event.error`` instead, so that one
    bad message does not stop a consumer.
    """
    event = Event(subject, dict(headers or {}), None, stream_seq=stream_seq, time=time)
    try:
        event.tag = tag_from_message(subject, event.headers, prefix)
    except ValueError as error:
        event.error = f"cannot decode the tag: {error}"
        return event

    try:
        event.data = json_safe_data(payload, event.headers.get(HEADER_CONTENT_TYPE))
    except (ValueError, RecursionError) as error:
        event.error = f"cannot decode the payload: {error}"
    return event


def json_safe_data(payload: bytes, content_type: str | None) -> Any:
    """Return the ``data`` of a payload as JSON-safe values.

    A JSON payload is parsed without turning ``$bytes`` and the other special
    objects back into Python types, so they stay as published. A msgpack payload is
    decoded and then given the same JSON encoding. Raises ValueError for a payload
    that does not decode or is not an object with ``tag`` and ``data``.
    """
    if content_type is None:
        is_json = payload.lstrip()[:1] == b"{"
        content_type = CONTENT_TYPE_JSON if is_json else CONTENT_TYPE_MSGPACK

    if content_type == CONTENT_TYPE_JSON:
        event = json.loads(payload)
        if not isinstance(event, dict) or "tag" not in event or "data" not in event:
            raise ValueError("payload is not an object with 'tag' and 'data'")
        return event["data"]

    tag, data = decode_payload(payload, content_type)
    return json.loads(encode_json(tag, data))["data"]


# -- output -------------------------------------------------------------------------

_BOLD_CYAN = "\033[1;36m"
_BLUE = "\033[34m"
_YELLOW = "\033[33m"
_RESET = "\033[0m"

# A key at the start of a line of indented JSON: a whole JSON string followed by ": ".
_JSON_KEY_RE = re.compile(r'^(\s*)("(?:[^"\\]|\\.)*")(: )', re.MULTILINE)


def use_color(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Return whether to colour output: only on a terminal, and never with ``NO_COLOR`` set."""
    if environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def render_text(event: Event, color: bool = False) -> str:
    """Format an event as ``salt-run state.event pretty=True`` does: the tag, a tab, indented JSON.

    The JSON has sorted keys and an indent of four spaces. An event that could not be
    decoded shows its subject and the reason instead.
    """
    if event.error is not None:
        head = event.tag if event.tag is not None else event.subject
        body = f"({event.error})"
        if color:
            return f"{_BOLD_CYAN}{head}{_RESET}\t{_YELLOW}{body}{_RESET}"
        return f"{head}\t{body}"

    body = _dump_json(event.data, indent=4, sort_keys=True)
    if not color:
        return f"{event.tag}\t{body}"
    body = _JSON_KEY_RE.sub(rf"\1{_BLUE}\2{_RESET}\3", body)
    return f"{_BOLD_CYAN}{event.tag}{_RESET}\t{body}"


def render_json(event: Event) -> str:
    """Format an event as one line of JSON with ``subject``, ``tag``, ``headers`` and ``data``.

    Events read from a stream also have ``stream_seq`` and ``time`` (UTC, ISO 8601),
    and an event that could not be decoded has ``error``.
    """
    line: dict[str, Any] = {
        "subject": event.subject,
        "tag": event.tag,
        "headers": event.headers,
        "data": event.data,
    }
    if event.stream_seq is not None:
        line["stream_seq"] = event.stream_seq
    if event.time is not None:
        line["time"] = event.time.astimezone(datetime.timezone.utc).isoformat()
    if event.error is not None:
        line["error"] = event.error
    return _dump_json(line, indent=None, sort_keys=False)


def _dump_json(value: Any, indent: int | None, sort_keys: bool) -> str:
    separators = None if indent is not None else (",", ":")
    text = json.dumps(
        value, indent=indent, sort_keys=sort_keys, ensure_ascii=False, separators=separators
    )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates, kept from tags or strings that were not UTF-8, cannot be
        # written as UTF-8. \u escapes keep them exact.
        text = json.dumps(
            value, indent=indent, sort_keys=sort_keys, ensure_ascii=True, separators=separators
        )
    return text


# -- times --------------------------------------------------------------------------

_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATION_RE = re.compile(rf"(?:{_DURATION_PART_RE.pattern})+")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> datetime.timedelta:
    """Parse a duration such as ``90s``, ``30m``, ``1h30m``, ``2d`` or ``1w``.

    Raises ValueError for anything else, including a number without a unit.
    """
    compact = text.strip().lower()
    if not _DURATION_RE.fullmatch(compact):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit (s, m, h, d, w)")
    seconds = sum(
        float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART_RE.findall(compact)
    )
    return datetime.timedelta(seconds=seconds)


def parse_time(text: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """Parse a ``--since`` or ``--until`` value into an aware UTC datetime.

    A duration (``30m``, ``1h``, ``2d``) counts back from ``now``. Anything else must
    be an ISO 8601 time, such as ``2026-12-04T10:00:00Z`` or ``2026-12-04 11:00+01:00``.
    A time without an offset, or a date alone, is local time. Raises ValueError
    naming the accepted forms.
    """
    stripped = text.strip()
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)

    if _DURATION_RE.fullmatch(stripped.lower()):
        return (now - parse_duration(stripped)).astimezone(datetime.timezone.utc)

    iso_text = stripped[:-1] + "+00:00" if stripped[-1:] in ("Z", "z") else stripped
    try:
        moment = datetime.datetime.fromisoformat(iso_text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: use a duration before now such as 30m, 1h or 2d, or an "
            "ISO 8601 time such as 2026-12-04T10:00:00Z"
        ) from None
    # astimezone() reads a naive datetime as local time.
    return moment.astimezone(datetime.timezone.utc)


# -- replay from JetStream ----------------------------------------------------------


@dataclass(frozen=True)
class ReplayRange:
    """The part of a stream to read back.

    The start is ``start_seq`` or ``start_time``, or the first message when both are
    None. Reading stops after ``end_seq`` and before the first message stored after
    ``end_time``, and always at the stream's last sequence when the replay starts.
    """

    start_seq: int | None = None
    start_time: datetime.datetime | None = None
    end_seq: int | None = None
    end_time: datetime.datetime | None = None

    def __post_init__(self) -> None:
        if self.start_seq is not None and self.start_time is not None:
            raise ValueError("set a start sequence or a start time, not both")
        if self.start_seq is not None and self.start_seq < 1:
            raise ValueError(f"start sequence {self.start_seq} is invalid: sequences start at 1")
        if self.end_seq is not None and self.end_seq < 1:
            raise ValueError(f"end sequence {self.end_seq} is invalid: sequences start at 1")
        if (
            self.start_seq is not None
            and self.end_seq is not None
            and self.end_seq < self.start_seq
        ):
            raise ValueError(
                f"end sequence {self.end_seq} is before start sequence {self.start_seq}"
            )
        if (
            self.start_time is not None
            and self.end_time is not None
            and self.end_time < self.start_time
        ):
            raise ValueError(
                f"end time {self.end_time.isoformat()} is before start time "
                f"{self.start_time.isoformat()}"
            )

    def consumer_start(self) -> dict[str, Any]:
        """Return the deliver policy fields of a JetStream consumer config."""
        if self.start_seq is not None:
            return {
                "deliver_policy": js_api.DeliverPolicy.BY_START_SEQUENCE,
                "opt_start_seq": self.start_seq,
            }
        if self.start_time is not None:
            return {
                "deliver_policy": js_api.DeliverPolicy.BY_START_TIME,
                "opt_start_time": self.start_time,
            }
        return {"deliver_policy": js_api.DeliverPolicy.ALL}


@dataclass
class ReplayProgress:
    """Progress of a replay: its end sequence, the last sequence read and the count.

    The command uses it to say where a replay stopped.
    """

    end_seq: int = 0
    last_seq: int | None = None
    messages: int = 0


# Messages requested per pull. nats-py 2.16 buffers up to 512 * 1024 messages per
# subscription (DEFAULT_JS_SUB_PENDING_MSGS_LIMIT), far more than one batch.
REPLAY_BATCH = 256

# An ephemeral consumer that a crashed replay leaves behind is removed by the server
# after this many seconds without a pull request.
_CONSUMER_INACTIVE_THRESHOLD = 60.0


async def replay_messages(
    js: JetStreamContext,
    stream: str,
    subjects: Sequence[str],
    replay_range: ReplayRange | None = None,
    *,
    fetch_timeout: float = 5.0,
    progress: ReplayProgress | None = None,
) -> AsyncIterator[Msg]:
    """Yield the stream's messages on ``subjects`` in stream order, then return.

    The replay reads through an ephemeral pull consumer with no acknowledgements,
    kept in memory, which the function deletes when it ends. It ends at the stream's
    last sequence when it starts, so events that arrive during the replay are not
    read. Wrap the iterator in ``contextlib.aclosing`` when the caller may stop early,
    so that the consumer is deleted at once.

    Raises :class:`StreamNotFoundError` when the stream does not exist, and
    :class:`ReplayError` when the stream stores none of ``subjects``, or when messages
    are lost on the way or stop arriving before the end.
    """
    replay_range = replay_range or ReplayRange()
    progress = progress if progress is not None else ReplayProgress()

    try:
        info = await js.stream_info(stream)
    except js_errors.NotFoundError:
        raise StreamNotFoundError(stream) from None

    stream_subjects = info.config.subjects or []
    if stream_subjects and not any(
        intersect_subjects(ours, theirs) is not None
        for ours in subjects
        for theirs in stream_subjects
    ):
        # nats-server accepts such a consumer and then delivers nothing.
        raise ReplayError(
            f"the stream stores {', '.join(stream_subjects)}, which none of "
            f"{', '.join(subjects)} overlaps; check that the subject prefix is the engine's"
        )

    end_seq = info.state.last_seq
    if replay_range.end_seq is not None:
        end_seq = min(end_seq, replay_range.end_seq)
    progress.end_seq = end_seq
    if info.state.messages == 0 or end_seq < max(info.state.first_seq, 1):
        return
    if replay_range.start_seq is not None and replay_range.start_seq > end_seq:
        return

    config = js_api.ConsumerConfig(
        name=NUID().next().decode(),
        ack_policy=js_api.AckPolicy.NONE,
        mem_storage=True,
        num_replicas=1,
        inactive_threshold=_CONSUMER_INACTIVE_THRESHOLD,
        **replay_range.consumer_start(),
    )
    if len(subjects) == 1:
        config.filter_subject = subjects[0]
    else:
        config.filter_subjects = list(subjects)

    consumer = await js.add_consumer(stream, config)
    subscription = None
    try:
        if consumer.num_pending == 0:
            return
        subscription = await js.pull_subscribe_bind(consumer=consumer.name, stream=stream)
        async for message in _pull_until_end(
            subscription, end_seq, replay_range.end_time, fetch_timeout, progress
        ):
            yield message
    finally:
        await _remove_consumer(js, stream, consumer.name, subscription)


async def _pull_until_end(
    subscription: JetStreamContext.PullSubscription,
    end_seq: int,
    end_time: datetime.datetime | None,
    fetch_timeout: float,
    progress: ReplayProgress,
) -> AsyncIterator[Msg]:
    expected_consumer_seq = 1
    while True:
        try:
            batch = await subscription.fetch(REPLAY_BATCH, timeout=fetch_timeout)
        except (nats_errors.TimeoutError, asyncio.TimeoutError):
            # Messages may have left the stream (max_age, max_bytes) since the
            # consumer counted them. Then nothing is pending and the replay is done.
            pending = (await subscription.consumer_info()).num_pending
            if pending == 0:
                return
            raise ReplayError(
                f"no message arrived within {fetch_timeout} s although {pending} are "
                f"pending after stream sequence {progress.last_seq}"
            ) from None

        for message in batch:
            metadata = message.metadata
            if metadata.sequence.consumer != expected_consumer_seq:
                # With no acknowledgements the server never redelivers, so a gap means
                # that messages were lost between the server and this client.
                raise ReplayError(
                    f"messages were lost after stream sequence {progress.last_seq}; "
                    f"start again at sequence {(progress.last_seq or 0) + 1}"
                )
            expected_consumer_seq += 1

            stream_seq = metadata.sequence.stream
            if stream_seq > end_seq:
                return
            if end_time is not None and metadata.timestamp > end_time:
                return

            progress.last_seq = stream_seq
            progress.messages += 1
            yield message

            if stream_seq >= end_seq or metadata.num_pending == 0:
                return


async def _remove_consumer(
    js: JetStreamContext,
    stream: str,
    consumer: str,
    subscription: JetStreamContext.PullSubscription | None,
) -> None:
    # Best effort: the server removes the consumer anyway once it is inactive.
    try:
        if subscription is not None:
            await subscription.unsubscribe()
        await js.delete_consumer(stream, consumer)
    except (nats_errors.Error, asyncio.TimeoutError) as error:
        log.debug("deleting replay consumer %s of stream %s failed: %r", consumer, stream, error)
