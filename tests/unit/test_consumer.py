"""Tests for salt_nats.consumer: filters, subscription subjects, decoding, output and times."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
from fnmatch import fnmatchcase
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats import errors as nats_errors
from nats.aio.msg import Msg

from salt_nats.codec import EventEncoder, pack_data, quote_id
from salt_nats.consumer import (
    Event,
    EventFilter,
    FilterError,
    ReplayError,
    ReplayProgress,
    ReplayRange,
    _pull_until_end,
    decode_event,
    intersect_subjects,
    job_jid,
    merge_subjects,
    parse_duration,
    parse_time,
    render_json,
    render_text,
    subject_covers,
    subscription_subjects,
    use_color,
    validate_glob,
)
from salt_nats.subjects import subject_matches, tag_to_subject

JID = "20261204194039500871"
MINION = "web01.example.com"
RETURN_TAG = f"salt/job/{JID}/ret/{MINION}"
UTC = datetime.timezone.utc


def encoded_message(
    tag: str, data: object, payload_format: str = "json", max_subject_bytes: int = 1024
) -> tuple[str, dict[str, str], bytes]:
    encoder = EventEncoder(
        subject_prefix="salt.events",
        master_id="master1",
        payload_format=payload_format,
        max_subject_bytes=max_subject_bytes,
    )
    frame = tag.encode("utf-8", "surrogateescape") + b"\n\n" + pack_data(data)
    encoded = encoder.encode(frame, "msg-1", 1024 * 1024)
    return encoded.subject, encoded.headers, encoded.payload


def event_for(tag: str, data: object, headers: dict[str, str] | None = None) -> Event:
    return Event(tag_to_subject(tag), headers or {}, tag, data)


# --- globs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "glob", ["salt/job/*/ret/*", "salt/auth", "a[bc]d", "a[!]]b", "[]]x", "[[]literal", ""]
)
def test_validate_glob_accepts(glob: str) -> None:
    assert validate_glob(glob) == glob


@pytest.mark.parametrize(
    ("glob", "index"), [("salt/[job", 5), ("[", 0), ("a[!", 1), ("a[]", 1), ("ok[x]/[y", 6)]
)
def test_validate_glob_rejects_unclosed_bracket(glob: str, index: int) -> None:
    with pytest.raises(ValueError, match=rf"'\[' at index {index} has no closing '\]'"):
        validate_glob(glob)


def test_event_filter_rejects_invalid_glob() -> None:
    with pytest.raises(FilterError, match="salt/\\[job"):
        EventFilter(tags=("salt/[job",))
    with pytest.raises(FilterError):
        EventFilter(minions=("web[",))
    with pytest.raises(FilterError):
        EventFilter(functions=("state.[",))


@pytest.mark.parametrize(
    ("tag", "jid"),
    [
        (f"salt/job/{JID}/new", JID),
        (RETURN_TAG, JID),
        (f"salt/run/{JID}/ret", JID),
        ("salt/job", None),
        ("salt/auth", None),
        (f"custom/job/{JID}/new", None),
    ],
)
def test_job_jid(tag: str, jid: str | None) -> None:
    assert job_jid(tag) == jid


# --- subscription subjects ------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_filter", "subjects"),
    [
        (EventFilter(), ["salt.events.>"]),
        (EventFilter(minions=(MINION,), functions=("test.ping",)), ["salt.events.>"]),
        (EventFilter(tags=("salt/job/*/ret/*",)), ["salt.events.salt.job.>"]),
        (EventFilter(tags=("salt/auth",)), ["salt.events.salt.auth"]),
        (
            EventFilter(tags=(f"salt/minion/{MINION}/start",)),
            ["salt.events.salt.minion.web01%2Eexample%2Ecom.start"],
        ),
        (
            EventFilter(tags=("salt/auth", "salt/minion/*/start")),
            ["salt.events.salt.auth", "salt.events.salt.minion.>"],
        ),
        (EventFilter(tags=("salt/job/*/ret/*", "salt/job/*")), ["salt.events.salt.job.>"]),
        (EventFilter(tags=("salt/job/*", "*")), ["salt.events.>"]),
        (
            EventFilter(jids=(JID,)),
            [f"salt.events.salt.job.{JID}.>", f"salt.events.salt.run.{JID}.>"],
        ),
        (
            EventFilter(tags=("salt/job/*/ret/*",), jids=(JID,)),
            [f"salt.events.salt.job.{JID}.>"],
        ),
        (
            EventFilter(tags=(f"salt/job/{JID}/new",), jids=(JID,)),
            [f"salt.events.salt.job.{JID}.new"],
        ),
        (EventFilter(jids=("weird*jid",)), ["salt.events.salt.job.>", "salt.events.salt.run.>"]),
    ],
)
def test_subscription_subjects(event_filter: EventFilter, subjects: list[str]) -> None:
    assert subscription_subjects(event_filter) == subjects


def test_subscription_subjects_other_prefix() -> None:
    event_filter = EventFilter(tags=("salt/auth",), jids=())

    assert subscription_subjects(EventFilter(), "acme.salt") == ["acme.salt.>"]
    assert subscription_subjects(event_filter, "acme.salt") == ["acme.salt.salt.auth"]


def test_subscription_subjects_excluding_filters() -> None:
    with pytest.raises(FilterError, match="no event can match both --tag salt/auth and --jid"):
        subscription_subjects(EventFilter(tags=("salt/auth",), jids=(JID,)))


def test_subscription_subjects_invalid_prefix() -> None:
    with pytest.raises(ValueError, match="wildcards"):
        subscription_subjects(EventFilter(), "salt.*")


def test_subscription_subjects_long_tag_keeps_shortened_subjects() -> None:
    long_tag = "custom/" + "x" * 200
    subject, _, _ = encoded_message(long_tag, {}, max_subject_bytes=64)

    (subscription,) = subscription_subjects(EventFilter(tags=(long_tag,)), max_subject_bytes=64)

    assert subject_matches(subscription, subject)


@pytest.mark.parametrize(
    ("first", "second", "common"),
    [
        ("a.b", "a.b", "a.b"),
        ("a.b", "a.c", None),
        ("a.*", "a.b", "a.b"),
        ("a.>", "a.b.c", "a.b.c"),
        ("a.b.>", "a.*.c", "a.b.c"),
        ("a.>", "a.b.>", "a.b.>"),
        ("a.>", "a", None),
        ("a.b", "a.b.c", None),
        ("a.*.c", "a.b.>", "a.b.c"),
        ("a.*", "*.b", "a.b"),
    ],
)
def test_intersect_subjects(first: str, second: str, common: str | None) -> None:
    assert intersect_subjects(first, second) == common
    assert intersect_subjects(second, first) == common


@pytest.mark.parametrize(
    ("general", "specific", "covers"),
    [
        ("a.>", "a.b", True),
        ("a.>", "a.b.>", True),
        ("a.>", "a", False),
        ("a.*", "a.b", True),
        ("a.*", "a.>", False),
        ("a.b", "a.*", False),
        ("a.*.c", "a.b.c", True),
        ("a.b", "a.b", True),
        ("a.b", "a.b.c", False),
    ],
)
def test_subject_covers(general: str, specific: str, covers: bool) -> None:
    assert subject_covers(general, specific) is covers


def test_merge_subjects_partial_overlap() -> None:
    assert merge_subjects(["a.*.c", "a.b.>"]) == ["a.*.>"]
    # "a.b.>" needs a token after "a.b", so the two never match the same subject.
    assert merge_subjects(["a.b", "a.b.>"]) == ["a.b", "a.b.>"]
    assert merge_subjects(["a.b.c", "a.>", "x.y"]) == ["a.>", "x.y"]
    assert merge_subjects(["a.b", "a.c"]) == ["a.b", "a.c"]


# Patterns and subjects over a small alphabet, so that random cases overlap often.
_tokens = st.sampled_from(["a", "b", "*"])
_patterns = st.builds(
    lambda tokens, tail: ".".join(tokens + ([">"] if tail else [])),
    st.lists(_tokens, min_size=1, max_size=3),
    st.booleans(),
)
_subjects = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=5).map(".".join)


@settings(max_examples=300, deadline=None)
@given(_patterns, _patterns, _subjects)
def test_intersection_matches_both(first: str, second: str, subject: str) -> None:
    common = intersect_subjects(first, second)
    in_both = subject_matches(first, subject) and subject_matches(second, subject)

    if common is None:
        assert not in_both
    else:
        assert subject_matches(common, subject) == in_both


@settings(max_examples=300, deadline=None)
@given(st.lists(_patterns, min_size=1, max_size=5), _subjects)
def test_merged_subjects_cover_without_overlap(patterns: list[str], subject: str) -> None:
    merged = merge_subjects(patterns)

    if any(subject_matches(pattern, subject) for pattern in patterns):
        assert sum(subject_matches(pattern, subject) for pattern in merged) == 1
    for index, pattern in enumerate(merged):
        for other in merged[index + 1 :]:
            assert intersect_subjects(pattern, other) is None, (pattern, other)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["salt", "job", JID, "ret", "new", "*", "web?", "x.y"]), max_size=5)
)
def test_subscription_receives_every_matching_tag(segments: list[str]) -> None:
    glob = "/".join(segments)
    tag = glob.replace("*", "anything/at/all").replace("?", "1")
    (subject,) = subscription_subjects(EventFilter(tags=(glob,)))

    if fnmatchcase(tag, glob):
        assert subject_matches(subject, tag_to_subject(tag))


# --- local filtering ------------------------------------------------------------------


def test_filter_tag_glob_uses_fnmatch() -> None:
    event_filter = EventFilter(tags=("salt/job/*/ret/*",))

    assert event_filter.matches(event_for(RETURN_TAG, {}))
    # fnmatch's "*" also matches "/", as in Salt's own tag matching.
    assert event_filter.matches(event_for("salt/job/1/2/ret/x", {}))
    assert not event_filter.matches(event_for(f"salt/job/{JID}/new", {}))


def test_filter_minion_sources() -> None:
    event_filter = EventFilter(minions=(MINION,))

    from_header = event_for("custom/a", {}, {"Salt-Origin": quote_id(MINION)})
    from_data = event_for("custom/b", {"id": MINION})
    from_return_tag = event_for(RETURN_TAG, {"return": True})
    from_other = event_for("custom/c", {"id": "db01"}, {"Salt-Origin": "db01"})

    assert event_filter.matches(from_header)
    assert event_filter.matches(from_data)
    assert event_filter.matches(from_return_tag)
    assert not event_filter.matches(from_other)
    assert not event_filter.matches(event_for(f"salt/job/{JID}/new", {"minions": [MINION]}))


def test_filter_minion_header_is_unquoted() -> None:
    minion = "db 01/é"
    event = event_for("custom/a", {}, {"Salt-Origin": quote_id(minion)})

    assert EventFilter(minions=(minion,)).matches(event)
    assert EventFilter(minions=("db *",)).matches(event)


def test_filter_function() -> None:
    ping_return = event_for(RETURN_TAG, {"fun": "test.ping"})
    state_return = event_for(RETURN_TAG, {"fun": "state.single"})
    no_function = event_for("salt/auth", {"id": MINION})
    list_data = event_for("custom/list", [1, 2])

    assert EventFilter(functions=("test.ping",)).matches(ping_return)
    assert not EventFilter(functions=("test.ping",)).matches(state_return)
    assert EventFilter(functions=("state.*",)).matches(state_return)
    assert not EventFilter(functions=("test.ping",)).matches(no_function)
    assert not EventFilter(functions=("*",)).matches(list_data)


def test_filter_jid() -> None:
    event_filter = EventFilter(jids=(JID, "20260101000000000000"))

    assert event_filter.matches(event_for(f"salt/job/{JID}/new", {}))
    assert event_filter.matches(event_for(f"salt/run/{JID}/ret", {}))
    assert not event_filter.matches(event_for("salt/job/20990101000000000000/new", {}))
    assert not event_filter.matches(event_for("salt/auth", {"jid": JID}))


def test_filter_requires_every_kind() -> None:
    event_filter = EventFilter(
        tags=("salt/job/*",), minions=(MINION,), functions=("test.*",), jids=(JID,)
    )
    data = {"fun": "test.ping", "id": MINION}

    assert event_filter.matches(event_for(RETURN_TAG, data))
    assert not event_filter.matches(event_for(RETURN_TAG, {**data, "fun": "cmd.run"}))
    assert not event_filter.matches(event_for(RETURN_TAG.replace(MINION, "db01"), {}))


def test_undecodable_event_passes_only_empty_filter() -> None:
    broken = Event("salt.events.x", {}, "x", None, error="cannot decode the payload")

    assert EventFilter().matches(broken)
    assert not EventFilter(tags=("*",)).matches(broken)


# --- decoding -------------------------------------------------------------------------


def test_decode_json_payload_keeps_special_values() -> None:
    data = {"fun": "test.ping", "blob": b"\x00\x01", "when": datetime.datetime(2026, 12, 4)}
    subject, headers, payload = encoded_message(RETURN_TAG, data)

    event = decode_event(subject, headers, payload)

    assert event.error is None
    assert event.tag == RETURN_TAG
    assert event.data == {
        "fun": "test.ping",
        "blob": {"$bytes": "AAE="},
        "when": {"$datetime": "2026-12-04T00:00:00"},
    }
    assert event.headers == headers


def test_decode_msgpack_payload_like_json() -> None:
    data = {"blob": b"\x00\x01", "when": datetime.datetime(2026, 12, 4), "items": {1, 2}}
    json_event = decode_event(*encoded_message(RETURN_TAG, data, "json"))
    msgpack_event = decode_event(*encoded_message(RETURN_TAG, data, "msgpack"))

    assert msgpack_event.error is None
    assert msgpack_event.data == json_event.data


def test_decode_without_content_type() -> None:
    subject, headers, payload = encoded_message("custom/a", {"n": 1}, "msgpack")
    del headers["Content-Type"]

    assert decode_event(subject, headers, payload).data == {"n": 1}
    assert decode_event(subject, None, b'{"tag": "custom/a", "data": 2}').data == 2


def test_decode_shortened_subject_uses_header() -> None:
    long_tag = "custom/" + "y" * 300
    subject, headers, payload = encoded_message(long_tag, {}, max_subject_bytes=64)

    event = decode_event(subject, headers, payload)

    assert "%%" in subject
    assert event.tag == long_tag
    assert event.error is None


def test_decode_errors_are_reported_not_raised() -> None:
    bad_payload = decode_event("salt.events.custom.a", {}, b"{not json")
    bad_shape = decode_event("salt.events.custom.a", {}, b"[1, 2]")
    bad_subject = decode_event("salt.events.custom.a%ZZ", {}, b"{}")
    other_prefix = decode_event("other.custom", {}, b"{}")

    assert bad_payload.tag == "custom/a"
    assert bad_payload.error.startswith("cannot decode the payload")
    assert bad_shape.error.startswith("cannot decode the payload")
    assert bad_subject.tag is None
    assert bad_subject.error.startswith("cannot decode the tag")
    assert other_prefix.error.startswith("cannot decode the tag")


def test_decode_deeply_nested_payload() -> None:
    depth = 100_000
    payload = b'{"tag": "custom/a", "data": ' + b"[" * depth + b"]" * depth + b"}"

    event = decode_event("salt.events.custom.a", {}, payload)

    assert event.tag == "custom/a"
    assert event.error.startswith("cannot decode the payload")


# --- output ---------------------------------------------------------------------------


def test_render_text_matches_state_event_pretty() -> None:
    data = {"return": True, "fun": "test.ping", "nested": {"b": 1, "a": [1, "x"]}}

    text = render_text(event_for(RETURN_TAG, data))

    assert text == f"{RETURN_TAG}\t" + json.dumps(data, indent=4, sort_keys=True)


def test_render_text_color() -> None:
    text = render_text(event_for(RETURN_TAG, {"fun": "test.ping", "list": ["a: b"]}), color=True)

    assert text.startswith(f"\033[1;36m{RETURN_TAG}\033[0m\t{{")
    assert '\033[34m"fun"\033[0m: "test.ping"' in text
    # A string inside a list is a value, not a key.
    assert '        "a: b"' in text


def test_render_text_undecodable_event() -> None:
    broken = Event("salt.events.x%ZZ", {}, None, error="cannot decode the tag: bad")

    assert render_text(broken) == "salt.events.x%ZZ\t(cannot decode the tag: bad)"


def test_render_json_fields() -> None:
    subject, headers, payload = encoded_message(RETURN_TAG, {"blob": b"\x00"})
    stored_at = datetime.datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    event = decode_event(subject, headers, payload, stream_seq=7, time=stored_at)

    line = render_json(event)

    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed == {
        "subject": subject,
        "tag": RETURN_TAG,
        "headers": headers,
        "data": {"blob": {"$bytes": "AA=="}},
        "stream_seq": 7,
        "time": "2026-12-04T10:00:00+00:00",
    }


def test_render_json_lone_surrogate_round_trips() -> None:
    tag = "custom/bad\udcff/é"
    event = Event("salt.events.custom.bad%ED%B3%BF.%C3%A9", {}, tag, {"text": "\udc80"})

    line = render_json(event)

    line.encode("utf-8")  # no UnicodeEncodeError
    assert json.loads(line)["tag"] == tag
    assert json.loads(line)["data"] == {"text": "\udc80"}


def test_render_json_error_field() -> None:
    broken = Event("salt.events.x", {}, "x", error="cannot decode the payload: bad")

    assert json.loads(render_json(broken))["error"] == "cannot decode the payload: bad"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_use_color() -> None:
    assert use_color(_Terminal(), {})
    assert not use_color(_Terminal(), {"NO_COLOR": "1"})
    assert use_color(_Terminal(), {"NO_COLOR": ""})
    assert not use_color(io.StringIO(), {})


# --- times ----------------------------------------------------------------------------

NOW = datetime.datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2d", 172800),
        ("1w", 604800),
        (" 10M ", 600),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "h", "1y", "-1h", "1h 30m", "yesterday"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", datetime.datetime(2026, 12, 4, 11, 0, tzinfo=UTC)),
        ("30m", datetime.datetime(2026, 12, 4, 11, 30, tzinfo=UTC)),
        ("2026-12-04T10:00:00Z", datetime.datetime(2026, 12, 4, 10, 0, tzinfo=UTC)),
        ("2026-12-04T10:00:00z", datetime.datetime(2026, 12, 4, 10, 0, tzinfo=UTC)),
        ("2026-12-04T11:00:00+01:00", datetime.datetime(2026, 12, 4, 10, 0, tzinfo=UTC)),
        ("2026-12-04 10:00:00.250+00:00", datetime.datetime(2026, 12, 4, 10, 0, 0, 250000, UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime.datetime) -> None:
    assert parse_time(text, NOW) == expected


def test_parse_time_naive_is_local() -> None:
    local = datetime.datetime(2026, 12, 4, 10, 0).astimezone()

    assert parse_time("2026-12-04T10:00:00", NOW) == local.astimezone(UTC)
    assert parse_time("2026-12-04", NOW) == datetime.datetime(2026, 12, 4).astimezone(UTC)


@pytest.mark.parametrize("text", ["yesterday", "10", "2026-13-01", "12:00", ""])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid time"):
        parse_time(text, NOW)


# --- replay range ---------------------------------------------------------------------


def test_replay_range_consumer_start() -> None:
    since = datetime.datetime(2026, 12, 4, 10, 0, tzinfo=UTC)

    assert ReplayRange().consumer_start() == {"deliver_policy": "all"}
    assert ReplayRange(start_seq=5).consumer_start() == {
        "deliver_policy": "by_start_sequence",
        "opt_start_seq": 5,
    }
    assert ReplayRange(start_time=since).consumer_start() == {
        "deliver_policy": "by_start_time",
        "opt_start_time": since,
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"start_seq": 1, "start_time": NOW}, "not both"),
        ({"start_seq": 0}, "sequences start at 1"),
        ({"end_seq": 0}, "sequences start at 1"),
        ({"start_seq": 5, "end_seq": 4}, "end sequence 4 is before start sequence 5"),
        ({"start_time": NOW, "end_time": NOW - datetime.timedelta(seconds=1)}, "before start"),
    ],
)
def test_replay_range_rejects(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReplayRange(**arguments)


# --- reading a pull consumer until the end --------------------------------------------

STORED_AT = datetime.datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def stored_message(stream_seq: int, consumer_seq: int, pending: int, seconds: int = 0) -> Msg:
    """Return a message as a pull consumer delivers it, with its metadata in the reply."""
    nanoseconds = int((STORED_AT.timestamp() + seconds) * 1_000_000_000)
    reply = f"$JS.ACK.STREAM.CONSUMER.1.{stream_seq}.{consumer_seq}.{nanoseconds}.{pending}"
    return Msg(None, subject="salt.events.a", reply=reply)


class FakePullSubscription:
    """Return the given batches from fetch(), then time out like an empty consumer."""

    def __init__(self, batches: list[list[Msg]], pending_after: int = 0) -> None:
        self.batches = list(batches)
        self.pending_after = pending_after

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        if not self.batches:
            raise nats_errors.TimeoutError
        return self.batches.pop(0)

    async def consumer_info(self) -> SimpleNamespace:
        return SimpleNamespace(num_pending=self.pending_after)


def pull_sequences(
    subscription: FakePullSubscription,
    end_seq: int,
    end_time: datetime.datetime | None = None,
) -> list[int]:
    async def read() -> list[int]:
        messages = _pull_until_end(subscription, end_seq, end_time, 0.1, ReplayProgress())
        return [message.metadata.sequence.stream async for message in messages]

    return asyncio.run(read())


def test_pull_stops_at_end_sequence() -> None:
    batch = [stored_message(1, 1, 5), stored_message(2, 2, 4), stored_message(3, 3, 3)]

    assert pull_sequences(FakePullSubscription([batch]), end_seq=2) == [1, 2]


def test_pull_skips_messages_after_end() -> None:
    batch = [stored_message(1, 1, 2), stored_message(9, 2, 1)]

    assert pull_sequences(FakePullSubscription([batch]), end_seq=5) == [1]


def test_pull_stops_when_nothing_pending() -> None:
    batches = [[stored_message(1, 1, 1)], [stored_message(5, 2, 0)], [stored_message(6, 3, 0)]]

    assert pull_sequences(FakePullSubscription(batches), end_seq=10) == [1, 5]


def test_pull_stops_after_end_time() -> None:
    batch = [stored_message(1, 1, 2, seconds=0), stored_message(2, 2, 1, seconds=60)]
    end_time = STORED_AT + datetime.timedelta(seconds=30)

    assert pull_sequences(FakePullSubscription([batch]), end_seq=10, end_time=end_time) == [1]


def test_pull_gap_raises() -> None:
    batch = [stored_message(1, 1, 3), stored_message(3, 3, 1)]

    with pytest.raises(
        ReplayError, match="lost after stream sequence 1; start again at sequence 2"
    ):
        pull_sequences(FakePullSubscription([batch]), end_seq=10)


def test_pull_timeout_with_nothing_pending_ends() -> None:
    subscription = FakePullSubscription([[stored_message(1, 1, 4)]], pending_after=0)

    assert pull_sequences(subscription, end_seq=10) == [1]


def test_pull_timeout_with_pending_raises() -> None:
    subscription = FakePullSubscription([[stored_message(1, 1, 4)]], pending_after=3)

    with pytest.raises(
        ReplayError, match=r"no message arrived within 0\.1 s although 3 are pending"
    ):
        pull_sequences(subscription, end_seq=10)
