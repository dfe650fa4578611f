"""Tests for the tag <-> subject codec in salt_nats.subjects."""

from __future__ import annotations

import hashlib
import json
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salt_nats.subjects import (
    DEFAULT_MAX_SUBJECT_BYTES,
    PERCENT_ENCODING,
    TAG_ENCODING_HEADER,
    TAG_HEADER,
    ShortenedSubjectError,
    decode_header_value,
    decode_token,
    encode_header_value,
    encode_token,
    is_shortened_subject,
    parse_return_subject,
    return_subject,
    subject_to_tag,
    tag_from_message,
    tag_glob_to_subject,
    tag_headers,
    tag_to_subject,
    validate_prefix,
    validate_subject_settings,
)

# 64 events recorded from a Salt 3008.4 master's bus with two minions: authentication,
# minion start, test.ping, state.single, event.send with custom tags and a runner job.
SAMPLE_EVENTS = Path(__file__).resolve().parents[1] / "data" / "real-events-salt3008.jsonl"

MAX_SUBJECT_BYTES_VALUES = [64, 100, 256, DEFAULT_MAX_SUBJECT_BYTES, 3800]

LONG_TAG = "salt/custom/" + "x" * 4988


# Helpers


def assert_valid_publish_subject(subject: str, max_subject_bytes: int) -> None:
    tokens = subject.split(".")
    assert len(subject.encode("utf-8")) <= max_subject_bytes
    assert all("\x21" <= char <= "\x7e" for char in subject), subject
    assert all(tokens), subject
    assert "*" not in tokens
    assert ">" not in tokens


def nats_matches(subscription: str, subject: str) -> bool:
    """Return whether nats-server delivers ``subject`` to a subscription on ``subscription``."""
    filter_tokens = subscription.split(".")
    subject_tokens = subject.split(".")
    for index, token in enumerate(filter_tokens):
        if token == ">":
            return len(subject_tokens) > index
        if index >= len(subject_tokens):
            return False
        if token not in ("*", subject_tokens[index]):
            return False
    return len(filter_tokens) == len(subject_tokens)


def read_sample_tags() -> list[str]:
    with SAMPLE_EVENTS.open(encoding="utf-8") as lines:
        return [json.loads(line)["tag"] for line in lines if line.strip()]


# Every code point, including lone surrogates, control characters and unassigned ones.
any_character = st.characters(codec=None, exclude_categories=())
tricky_character = st.sampled_from(list("/.*>%%\t\n\r \x00\x7f/é€😀\ud800\udfffab"))
tag_text = st.one_of(
    st.text(),
    st.text(st.one_of(any_character, tricky_character)),
    st.text(tricky_character, max_size=40),
    st.text(st.one_of(any_character, tricky_character), min_size=900, max_size=6000),
    # Many segments of varied length, so that shortening often cuts right at the limit.
    st.lists(st.text(st.sampled_from("ab.é%"), max_size=40), max_size=12).map("/".join),
)


# Table of real and awkward tags


SUBJECT_CASES = [
    (
        "salt/job/20261204194039500871/ret/web01.example.com",
        "salt.events.salt.job.20261204194039500871.ret.web01%2Eexample%2Ecom",
    ),
    ("salt/auth", "salt.events.salt.auth"),
    ("minion_start", "salt.events.minion_start"),
    ("key", "salt.events.key"),
    ("20261204194039500871", "salt.events.20261204194039500871"),
    ("file.managed", "salt.events.file%2Emanaged"),
    (
        "salt/beacon/web01/inotify//etc/nginx/nginx.conf",
        "salt.events.salt.beacon.web01.inotify.%.etc.nginx.nginx%2Econf",
    ),
    (
        "salt/state_result/20261204194039500871/web01/Install nginx",
        "salt.events.salt.state_result.20261204194039500871.web01.Install%20nginx",
    ),
    ("myco/deploy/v1.2 done", "salt.events.myco.deploy.v1%2E2%20done"),
    ("custom/wild/*/>", "salt.events.custom.wild.%2A.%3E"),
    ("a*b/c>d", "salt.events.a%2Ab.c%3Ed"),
    ("100%/done", "salt.events.100%25.done"),
    ("%", "salt.events.%25"),
    ("%%", "salt.events.%25%25"),
    ("tab\there", "salt.events.tab%09here"),
    ("line\nfeed", "salt.events.line%0Afeed"),
    ("café/crème", "salt.events.caf%C3%A9.cr%C3%A8me"),
    ("emoji/😀", "salt.events.emoji.%F0%9F%98%80"),
    ("lone/\ud800", "salt.events.lone.%ED%A0%80"),
    ("salt/job/", "salt.events.salt.job.%"),
    ("custom//double//slash/", "salt.events.custom.%.double.%.slash.%"),
    ("/leading", "salt.events.%.leading"),
    ("/", "salt.events.%.%"),
    ("", "salt.events.%"),
    (LONG_TAG, "salt.events.salt.custom.%%db651e42ede287e0"),
]


@pytest.mark.parametrize(("tag", "expected"), SUBJECT_CASES)
def test_tag_to_subject_table(tag: str, expected: str) -> None:
    assert tag_to_subject(tag) == expected


@pytest.mark.parametrize(("tag", "subject"), SUBJECT_CASES[:-1])
def test_subject_to_tag_table(tag: str, subject: str) -> None:
    assert subject_to_tag(subject) == tag


def test_long_tag_shortened() -> None:
    subject = tag_to_subject(LONG_TAG)

    assert is_shortened_subject(subject)
    assert_valid_publish_subject(subject, DEFAULT_MAX_SUBJECT_BYTES)
    with pytest.raises(ShortenedSubjectError):
        subject_to_tag(subject)
    assert tag_from_message(subject, tag_headers(LONG_TAG)) == LONG_TAG


def test_shortened_digest_is_sha256() -> None:
    tag = "a/" + "é" * 2000
    digest = hashlib.sha256(tag.encode("utf-8")).hexdigest()[:16]

    assert tag_to_subject(tag) == f"salt.events.a.%%{digest}"


def test_shortened_keeps_whole_tokens() -> None:
    tag = "salt/job/" + "1" * 30 + "/ret/" + "m" * 100

    subject = tag_to_subject(tag, max_subject_bytes=64)

    assert subject.startswith("salt.events.salt.job.%%")
    assert len(subject) <= 64


def test_shortened_fills_limit_exactly() -> None:
    # "salt.events" (11 bytes), a dot, 33 bytes of token and the 19-byte ".%%<digest>"
    # add up to 64 bytes.
    tag = "a" * 33 + "/" + "b" * 100

    subject = tag_to_subject(tag, max_subject_bytes=64)

    assert subject.startswith("salt.events." + "a" * 33 + ".%%")
    assert len(subject) == 64


def test_shortened_drops_token_over_limit() -> None:
    tag = "a" * 34 + "/" + "b" * 100

    subject = tag_to_subject(tag, max_subject_bytes=64)

    assert subject.startswith("salt.events.%%")
    assert len(subject) == 30


def test_subject_at_limit_not_shortened() -> None:
    tag = "a" * (DEFAULT_MAX_SUBJECT_BYTES - len("salt.events."))

    subject = tag_to_subject(tag)

    assert len(subject) == DEFAULT_MAX_SUBJECT_BYTES
    assert not is_shortened_subject(subject)


def test_subject_over_limit_shortened() -> None:
    tag = "a" * (DEFAULT_MAX_SUBJECT_BYTES - len("salt.events.") + 1)

    assert is_shortened_subject(tag_to_subject(tag))


def test_custom_prefix() -> None:
    subject = tag_to_subject("salt/auth", prefix="site1.salt")

    assert subject == "site1.salt.salt.auth"
    assert subject_to_tag(subject, prefix="site1.salt") == "salt/auth"


def test_sample_events_round_trip() -> None:
    tags = read_sample_tags()

    assert len(tags) == 64
    for tag in tags:
        subject = tag_to_subject(tag)
        assert_valid_publish_subject(subject, DEFAULT_MAX_SUBJECT_BYTES)
        assert subject_to_tag(subject) == tag


def test_sample_events_awkward_tags() -> None:
    subjects = {tag: tag_to_subject(tag) for tag in read_sample_tags()}

    assert subjects["custom/with space/x"] == "salt.events.custom.with%20space.x"
    assert subjects["custom/wild/*/>"] == "salt.events.custom.wild.%2A.%3E"
    assert subjects["custom//double//slash/"] == "salt.events.custom.%.double.%.slash.%"
    assert subjects["custom.dotted.tag"] == "salt.events.custom%2Edotted%2Etag"


# Properties of the event codec


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tag=tag_text, max_subject_bytes=st.sampled_from(MAX_SUBJECT_BYTES_VALUES))
def test_round_trip_property(tag: str, max_subject_bytes: int) -> None:
    subject = tag_to_subject(tag, max_subject_bytes=max_subject_bytes)

    assert_valid_publish_subject(subject, max_subject_bytes)
    if not is_shortened_subject(subject):
        assert subject_to_tag(subject) == tag
    assert tag_from_message(subject, tag_headers(tag)) == tag


@settings(max_examples=300, deadline=None)
@given(tag=tag_text)
def test_shortened_only_when_needed(tag: str) -> None:
    subject = tag_to_subject(tag)
    full_length = len("salt.events.") + len(".".join(encode_token(s) for s in tag.split("/")))

    assert is_shortened_subject(subject) == (full_length > DEFAULT_MAX_SUBJECT_BYTES)


@settings(max_examples=300, deadline=None)
@given(segment=st.text(st.one_of(any_character, tricky_character)))
def test_token_round_trip(segment: str) -> None:
    token = encode_token(segment)

    assert token
    assert decode_token(token) == segment


# Strings built from token characters: those that decode must re-encode unchanged.
subject_like = st.text(st.sampled_from(list("ab%.0123456789ACEFaf*>/ ")), min_size=1)


@settings(max_examples=400)
@given(rest=subject_like)
def test_decode_accepts_only_canonical(rest: str) -> None:
    subject = "salt.events." + rest
    try:
        tag = subject_to_tag(subject)
    except ValueError:
        return

    assert tag_to_subject(tag) == subject


# Malformed subjects and tokens


@pytest.mark.parametrize(
    "token",
    [
        "",
        "%G1",
        "%4",
        "abc%",
        "%c3%a9",
        "%41",
        "%FF",
        "%C3",
        "a.b",
        "a*b",
        "a>b",
        "a b",
        "a/b",
        "é",
        "%%0123456789abcdef",
    ],
)
def test_decode_token_rejects(token: str) -> None:
    with pytest.raises(ValueError, match="invalid subject token"):
        decode_token(token)


@pytest.mark.parametrize(
    "subject",
    [
        "salt.events",
        "salt.events.",
        "salt.eventsx.auth",
        "other.salt.auth",
        "salt.events.salt..auth",
        "salt.events.a%2Fb",
        "salt.events.%%xyz",
        "salt.events.%%0123456789ABCDEF",
        "salt.events.%%0123456789abcdef.x",
    ],
)
def test_subject_to_tag_rejects(subject: str) -> None:
    with pytest.raises(ValueError):
        subject_to_tag(subject)


def test_malformed_marker_not_shortened_error() -> None:
    with pytest.raises(ValueError, match="malformed shortened-subject token") as caught:
        subject_to_tag("salt.events.a.%%12")

    assert not isinstance(caught.value, ShortenedSubjectError)


def test_wrong_prefix_message() -> None:
    with pytest.raises(ValueError, match=r"is not under the prefix 'salt\.events'"):
        subject_to_tag("salt.returns.web01.test%2Eping.1")


# Headers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("salt/auth", ("salt/auth", False)),
        ("myco/deploy/v1.2 done", ("myco/deploy/v1.2 done", False)),
        ("100%/done", ("100%/done", False)),
        ("", ("", False)),
        (" leading", ("%20leading", True)),
        ("trailing ", ("trailing%20", True)),
        ("tab\there", ("tab%09here", True)),
        ("line\r\nfeed", ("line%0D%0Afeed", True)),
        ("100% café", ("100%25%20caf%C3%A9", True)),
        ("\ud800", ("%ED%A0%80", True)),
    ],
)
def test_encode_header_value_table(text: str, expected: tuple[str, bool]) -> None:
    assert encode_header_value(text) == expected


@settings(max_examples=300, deadline=None)
@given(text=tag_text)
def test_header_value_round_trip(text: str) -> None:
    value, encoded = encode_header_value(text)

    assert all("\x20" <= char <= "\x7e" for char in value)
    assert value == value.strip(" ")
    assert decode_header_value(value, encoded) == text


def test_decode_header_value_lowercase() -> None:
    assert decode_header_value("caf%c3%a9", encoded=True) == "café"


def test_decode_header_value_plain() -> None:
    assert decode_header_value("100%zz", encoded=False) == "100%zz"


@pytest.mark.parametrize("value", ["%G1", "abc%4", "abc%", "%FF", "%C3"])
def test_decode_header_value_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="invalid percent-encoded header value"):
        decode_header_value(value, encoded=True)


def test_tag_headers_plain() -> None:
    assert tag_headers("salt/auth") == {TAG_HEADER: "salt/auth"}


def test_tag_headers_encoded() -> None:
    assert tag_headers("a\tb") == {TAG_HEADER: "a%09b", TAG_ENCODING_HEADER: PERCENT_ENCODING}


def test_message_tag_from_subject() -> None:
    assert tag_from_message("salt.events.salt.auth", None) == "salt/auth"


def test_message_subject_wins_over_header() -> None:
    headers = {TAG_HEADER: "something/else"}

    assert tag_from_message("salt.events.salt.auth", headers) == "salt/auth"


def test_message_shortened_without_header() -> None:
    subject = tag_to_subject(LONG_TAG)

    with pytest.raises(ValueError, match="has no 'Salt-Tag' header"):
        tag_from_message(subject, {})


def test_message_header_mismatch() -> None:
    subject = tag_to_subject(LONG_TAG)
    headers = tag_headers(LONG_TAG + "x")

    with pytest.raises(ValueError, match="does not match the shortened subject"):
        tag_from_message(subject, headers)


def test_message_header_prefix_mismatch() -> None:
    # Same digest, but the subject's kept tokens were altered.
    subject = tag_to_subject(LONG_TAG).replace(".custom.", ".other.")

    with pytest.raises(ValueError, match="does not match the shortened subject"):
        tag_from_message(subject, tag_headers(LONG_TAG))


def test_message_unknown_encoding() -> None:
    subject = tag_to_subject(LONG_TAG)
    headers = {TAG_HEADER: LONG_TAG, TAG_ENCODING_HEADER: "base64"}

    with pytest.raises(ValueError, match="unsupported 'Salt-Tag-Encoding' header"):
        tag_from_message(subject, headers)


def test_message_percent_header() -> None:
    tag = "custom/é/" + "x" * 2000
    subject = tag_to_subject(tag)
    headers = tag_headers(tag)

    assert headers[TAG_ENCODING_HEADER] == PERCENT_ENCODING
    assert tag_from_message(subject, headers) == tag


# Prefix and limit validation


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ("", "is empty"),
        (".salt", "starts or ends with '.'"),
        ("salt.", "starts or ends with '.'"),
        ("salt..events", "empty token"),
        ("salt.*", "wildcards"),
        ("salt.>", "wildcards"),
        ("salt.ev*", "wildcards"),
        ("salt events", "whitespace"),
        ("salt\tevents", "whitespace"),
        ("salt.évents", "printable ASCII"),
        ("salt\x00", "printable ASCII"),
    ],
)
def test_validate_prefix_rejects(prefix: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_prefix(prefix)


@pytest.mark.parametrize("prefix", ["salt.events", "salt", "site-1.salt_events", "$SALT.ev"])
def test_validate_prefix_accepts(prefix: str) -> None:
    validate_prefix(prefix)


@pytest.mark.parametrize("max_subject_bytes", [0, 63, 3801, 4096])
def test_limit_out_of_range(max_subject_bytes: int) -> None:
    with pytest.raises(ValueError, match="set it between 64 and 3800"):
        tag_to_subject("salt/auth", max_subject_bytes=max_subject_bytes)


def test_prefix_too_long_for_limit() -> None:
    prefix = "p" * 46

    with pytest.raises(ValueError, match="use a prefix of at most 45 bytes"):
        validate_subject_settings(prefix, 64)


def test_prefix_longest_for_limit() -> None:
    # 45 bytes of prefix, one dot and the 18-character digest token fill 64 bytes.
    prefix = "p" * 45

    subject = tag_to_subject("x" * 100, prefix=prefix, max_subject_bytes=64)

    assert len(subject) == 64
    assert is_shortened_subject(subject)


def test_invalid_prefix_in_tag_to_subject() -> None:
    with pytest.raises(ValueError, match="wildcards"):
        tag_to_subject("salt/auth", prefix="salt.>")


# Returner subjects


def test_return_subject_example() -> None:
    subject = return_subject("web01.example.com", "test.ping", "20261204194039500871")

    assert subject == "salt.returns.web01%2Eexample%2Ecom.test%2Eping.20261204194039500871"


def test_return_subject_parse() -> None:
    fields = parse_return_subject("salt.returns.web01.state%2Eapply.20261204194039500871")

    assert fields.minion_id == "web01"
    assert fields.fun == "state.apply"
    assert fields.jid == "20261204194039500871"


def test_return_subject_custom_prefix() -> None:
    subject = return_subject("web01", "test.ping", "1", prefix="site1.returns")

    assert subject == "site1.returns.web01.test%2Eping.1"
    assert parse_return_subject(subject, prefix="site1.returns") == ("web01", "test.ping", "1")


@settings(max_examples=300, deadline=None)
@given(
    minion_id=st.text(st.one_of(any_character, tricky_character), max_size=80),
    fun=st.text(st.one_of(any_character, tricky_character), max_size=80),
    jid=st.text(st.one_of(any_character, tricky_character), max_size=40),
)
def test_return_subject_round_trip(minion_id: str, fun: str, jid: str) -> None:
    subject = return_subject(minion_id, fun, jid)

    assert_valid_publish_subject(subject, DEFAULT_MAX_SUBJECT_BYTES)
    assert len(subject.split(".")) == 5
    assert parse_return_subject(subject) == (minion_id, fun, jid)


def test_return_subject_too_long() -> None:
    with pytest.raises(ValueError, match="over max_subject_bytes=1024"):
        return_subject("m" * 1100, "test.ping", "1")


@pytest.mark.parametrize(
    "subject",
    [
        "salt.returns.web01.test%2Eping",
        "salt.returns.web01.test.ping.1",
        "salt.events.web01.test%2Eping.1",
        "salt.returns.web01.test%2eping.1",
    ],
)
def test_parse_return_subject_rejects(subject: str) -> None:
    with pytest.raises(ValueError):
        parse_return_subject(subject)


# Tag globs and subscriptions


GLOB_CASES = [
    ("salt/auth", "salt.events.salt.auth", True),
    ("salt/job/*", "salt.events.salt.job.>", True),
    ("*", "salt.events.>", True),
    ("salt/job/*/ret/*", "salt.events.salt.job.>", False),
    ("salt/job/*/new", "salt.events.salt.job.>", False),
    ("salt/job/2026*", "salt.events.salt.job.>", False),
    ("salt/minion/web0?/start", "salt.events.salt.minion.>", False),
    ("salt/minion/web0[12]/start", "salt.events.salt.minion.>", False),
    ("salt/minion/web01.example.com/*", "salt.events.salt.minion.web01%2Eexample%2Ecom.>", True),
    ("*/start", "salt.events.>", False),
    ("salt/job/", "salt.events.salt.job.%", True),
    ("", "salt.events.%", True),
]


@pytest.mark.parametrize(("glob", "subject", "exact"), GLOB_CASES)
def test_glob_to_subject_table(glob: str, subject: str, exact: bool) -> None:
    assert tag_glob_to_subject(glob) == (subject, exact)


SEGMENT_GLOB_CASES = [
    ("salt/job/*/ret/*", "salt.events.salt.job.*.ret.>", False),
    ("salt/job/*/new", "salt.events.salt.job.*.new", False),
    ("salt/job/*", "salt.events.salt.job.>", True),
    ("salt/*/2026*/ret", "salt.events.salt.*.>", False),
]


@pytest.mark.parametrize(("glob", "subject", "exact"), SEGMENT_GLOB_CASES)
def test_glob_one_segment_table(glob: str, subject: str, exact: bool) -> None:
    assert tag_glob_to_subject(glob, star_matches_one_segment=True) == (subject, exact)


def test_glob_long_literal() -> None:
    subject, exact = tag_glob_to_subject(LONG_TAG)

    assert subject == "salt.events.salt.custom.>"
    assert not exact
    assert nats_matches(subject, tag_to_subject(LONG_TAG))


def test_glob_long_literal_before_star() -> None:
    glob = "salt/" + "x" * 2000 + "/*"

    subject, exact = tag_glob_to_subject(glob)

    assert subject == "salt.events.salt.>"
    assert not exact


@pytest.mark.parametrize("tag", read_sample_tags())
def test_glob_matches_sample_tag(tag: str) -> None:
    globs = ["*", "salt/*", "salt/job/*", "salt/job/*/ret/*", "*/refresh/*", "custom/*"]
    subject = tag_to_subject(tag)

    for glob in globs:
        subscription, exact = tag_glob_to_subject(glob)
        if fnmatchcase(tag, glob):
            assert nats_matches(subscription, subject), (glob, subscription)
        elif exact:
            assert not nats_matches(subscription, subject), (glob, subscription)


# Small alphabets, so that random tags and globs match each other often.
glob_tag = st.one_of(
    st.text(st.sampled_from(list("ab/.*é ")), max_size=12),
    st.text(st.sampled_from(list("ab/")), min_size=60, max_size=200),
)
glob_segment = st.sampled_from(["a", "b", "ab", "", "*", "a*", "*b", "?", "[ab]", "[!a]", "a.b"])
tag_glob = st.one_of(
    st.lists(glob_segment, min_size=1, max_size=5).map("/".join),
    st.text(st.sampled_from(list("ab/*?[]!")), max_size=10),
)


@settings(max_examples=500, deadline=None)
@given(
    tag=glob_tag,
    glob=tag_glob,
    max_subject_bytes=st.sampled_from([64, 100, DEFAULT_MAX_SUBJECT_BYTES]),
)
def test_glob_subscription_property(tag: str, glob: str, max_subject_bytes: int) -> None:
    subject = tag_to_subject(tag, max_subject_bytes=max_subject_bytes)
    subscription, exact = tag_glob_to_subject(glob, max_subject_bytes=max_subject_bytes)
    glob_match = fnmatchcase(tag, glob)

    if glob_match:
        assert nats_matches(subscription, subject)
    if exact:
        assert nats_matches(subscription, subject) == glob_match


@settings(max_examples=300, deadline=None)
@given(
    tag=st.text(st.sampled_from(list("ab/.")), max_size=12),
    segments=st.lists(st.sampled_from(["a", "b", "", "*"]), min_size=1, max_size=5),
)
def test_glob_one_segment_subset(tag: str, segments: list[str]) -> None:
    glob = "/".join(segments)
    subscription, _ = tag_glob_to_subject(glob, star_matches_one_segment=True)

    if nats_matches(subscription, tag_to_subject(tag)):
        assert fnmatchcase(tag, glob)
