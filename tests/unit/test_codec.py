"""Tests for bus frames, payload encodings, headers and the size policy in salt_nats.codec.

Frames are built with Salt's own packer, ``SaltEvent.pack``, so these tests check the
codec against what a real master puts on its bus.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

import msgpack
import pytest
import salt.defaults
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from salt.utils.event import SaltEvent

from salt_nats import subjects
from salt_nats.codec import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_MSGPACK,
    HEADER_CONTENT_TYPE,
    HEADER_MASTER,
    HEADER_MSG_ID,
    HEADER_ORIGIN,
    HEADER_TAG,
    HEADER_TAG_ENCODING,
    HEADER_TRACEPARENT,
    HEADER_TRUNCATED,
    EncodeError,
    EventEncoder,
    FrameError,
    SaltConstant,
    decode_payload,
    encode_json,
    encode_msgpack,
    headers_size,
    origin_of,
    pack_data,
    quote_id,
    split_frame,
    traceparent_of,
    truncate_data,
    unpack_data,
    unquote_id,
)

# 64 events recorded from a Salt 3008.4 master's bus with two minions.
REAL_EVENTS_PATH = Path(__file__).resolve().parents[1] / "data" / "real-events-salt3008.jsonl"
REAL_EVENTS = [
    json.loads(line) for line in REAL_EVENTS_PATH.read_text("utf-8").splitlines() if line.strip()
]

MIB = 1024 * 1024
MARKER_START = "[salt-nats: value of about "
JOB_TAG = "salt/job/20261204194039500871/ret/web01"
JOB_FIELDS = {"jid": "20261204194039500871", "id": "web01", "fun": "cmd.run"}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def unpack_frame(frame: bytes) -> tuple[str, Any]:
    tag, packed = split_frame(frame)
    return tag, unpack_data(packed)


def make_encoder(**options: Any) -> EventEncoder:
    options.setdefault("subject_prefix", "salt.events")
    options.setdefault("master_id", "master01")
    return EventEncoder(**options)


def nats_py_header_block(headers: dict[str, str]) -> bytes:
    """Build the header block the way nats-py 2.16 ``publish`` writes it."""
    block = bytearray(b"NATS/1.0\r\n")
    for key, value in headers.items():
        block += key.strip().encode()
        block += b": "
        block += value.strip().replace("\r", " ").replace("\n", " ").encode()
        block += b"\r\n"
    block += b"\r\n"
    return bytes(block)


def as_json_shape(value: Any) -> Any:
    """Return ``value`` as JSON gives it back: tuples as lists, map keys as strings."""
    if isinstance(value, dict):
        return {str(k): as_json_shape(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json_shape(v) for v in value]
    return value


def marker_size(marker: str) -> int:
    """Return the estimated size of the removed value, as written in its marker."""
    return int(marker[len(MARKER_START) :].split()[0])


def count_markers(obj: Any) -> int:
    if isinstance(obj, str):
        return int(obj.startswith(MARKER_START))
    if isinstance(obj, dict):
        return sum(count_markers(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(count_markers(v) for v in obj)
    return 0


# Bus frames packed by Salt


@pytest.mark.parametrize("event", REAL_EVENTS, ids=lambda e: e["tag"])
def test_real_frame_tag(event: dict[str, Any]) -> None:
    tag, _ = split_frame(SaltEvent.pack(event["tag"], event["data"]))

    assert tag == event["tag"]


@pytest.mark.parametrize("event", REAL_EVENTS, ids=lambda e: e["tag"])
def test_real_frame_data(event: dict[str, Any]) -> None:
    _, data = unpack_frame(SaltEvent.pack(event["tag"], event["data"]))

    assert data == event["data"]


@pytest.mark.parametrize("event", REAL_EVENTS, ids=lambda e: e["tag"])
def test_real_event_json_round_trip(event: dict[str, Any]) -> None:
    tag, data = unpack_frame(SaltEvent.pack(event["tag"], event["data"]))

    assert decode_payload(encode_json(tag, data)) == (event["tag"], event["data"])


@pytest.mark.parametrize("event", REAL_EVENTS, ids=lambda e: e["tag"])
def test_real_event_msgpack_round_trip(event: dict[str, Any]) -> None:
    tag, packed = split_frame(SaltEvent.pack(event["tag"], event["data"]))
    payload = encode_msgpack(tag, packed)

    assert decode_payload(payload, CONTENT_TYPE_MSGPACK) == (tag, unpack_data(packed))


SALT_PACKED_CASES = [
    pytest.param({"b": b"\x00\xff\x80"}, {"b": b"\x00\xff\x80"}, id="bytes"),
    pytest.param(
        {"t": datetime.datetime(2026, 12, 4, 19, 40, 38, 315758)},
        {"t": datetime.datetime(2026, 12, 4, 19, 40, 38, 315758)},
        id="datetime",
    ),
    pytest.param(
        {"d": datetime.date(2026, 12, 4)},
        {"d": datetime.datetime(2026, 12, 4)},
        id="date-as-datetime",
    ),
    pytest.param({"s": {"one"}}, {"s": ["one"]}, id="set-as-list"),
    pytest.param({"t": (1, "a")}, {"t": [1, "a"]}, id="tuple-as-list"),
    pytest.param({"c": salt.defaults.NOT_SET}, {"c": SaltConstant("NOT_SET", None)}, id="NOT_SET"),
    pytest.param(
        {"c": salt.defaults._Constant("LIMIT", 5)},
        {"c": SaltConstant("LIMIT", 5)},
        id="constant-with-value",
    ),
    pytest.param(
        {"nested": {1: {2: "x", "k": [None, True, 1.5]}}},
        {"nested": {1: {2: "x", "k": [None, True, 1.5]}}},
        id="int-keys",
    ),
    pytest.param({"f": float("inf"), "g": -math.inf}, {"f": math.inf, "g": -math.inf}, id="inf"),
    pytest.param({"big": 2**64 + 1}, {"big": str(2**64 + 1)}, id="long-int-as-str"),
    pytest.param({"u": "caf\u00e9 \U0001f600"}, {"u": "caf\u00e9 \U0001f600"}, id="unicode"),
]


@pytest.mark.parametrize(("data", "expected"), SALT_PACKED_CASES)
def test_salt_packed_data(data: Any, expected: Any) -> None:
    _, unpacked = unpack_frame(SaltEvent.pack("custom/x", data))

    assert unpacked == expected


@pytest.mark.parametrize(("data", "expected"), SALT_PACKED_CASES)
def test_salt_packed_json_round_trip(data: Any, expected: Any) -> None:
    tag, unpacked = unpack_frame(SaltEvent.pack("custom/x", data))

    assert decode_payload(encode_json(tag, unpacked)) == ("custom/x", as_json_shape(expected))


@pytest.mark.parametrize(("data", "expected"), SALT_PACKED_CASES)
def test_salt_packed_msgpack_round_trip(data: Any, expected: Any) -> None:
    tag, packed = split_frame(SaltEvent.pack("custom/x", data))

    assert decode_payload(encode_msgpack(tag, packed)) == (tag, unpack_data(packed))


def test_salt_packed_nan() -> None:
    _, unpacked = unpack_frame(SaltEvent.pack("custom/x", {"n": float("nan")}))

    assert math.isnan(unpacked["n"])


def test_salt_packed_nan_json() -> None:
    _, data = decode_payload(encode_json("custom/x", {"n": float("nan")}))

    assert math.isnan(data["n"])


def test_salt_constant_unpacks_by_name() -> None:
    name, value = SaltConstant("NOT_SET", None)

    assert (name, value) == ("NOT_SET", None)


# Frames Salt's packer cannot build


NON_UTF8_FRAME = b"custom/raw\n\n" + b"\x81" + msgpack.packb("out") + b"\xa2\xff\xfe"


def test_non_utf8_str_unpacks() -> None:
    assert unpack_frame(NON_UTF8_FRAME) == ("custom/raw", {"out": "\udcff\udcfe"})


def test_non_utf8_str_json_round_trip() -> None:
    tag, data = unpack_frame(NON_UTF8_FRAME)

    assert decode_payload(encode_json(tag, data)) == (tag, data)


def test_non_utf8_str_json_is_ascii() -> None:
    tag, data = unpack_frame(NON_UTF8_FRAME)

    assert encode_json(tag, data).isascii()


def test_non_utf8_str_msgpack_round_trip() -> None:
    tag, packed = split_frame(NON_UTF8_FRAME)

    assert decode_payload(encode_msgpack(tag, packed)) == (tag, unpack_data(packed))


def test_non_utf8_str_repacks_same_bytes() -> None:
    _, packed = split_frame(NON_UTF8_FRAME)

    assert pack_data(unpack_data(packed)) == packed


def test_non_utf8_tag_kept() -> None:
    tag, _ = split_frame(b"custom/\xff\n\n\x80")

    assert tag.encode("utf-8", "surrogateescape") == b"custom/\xff"


def test_frame_split_at_first_separator() -> None:
    assert split_frame(b"a\n\nb\n\nc") == ("a", b"b\n\nc")


def test_unknown_ext_type_kept() -> None:
    packed = msgpack.packb({"x": msgpack.ExtType(5, b"\x01\x02")})

    assert unpack_data(packed) == {"x": msgpack.ExtType(5, b"\x01\x02")}


def test_unknown_ext_type_json_round_trip() -> None:
    data = unpack_data(msgpack.packb({"x": msgpack.ExtType(5, b"\x01\x02")}))

    assert decode_payload(encode_json("t", data)) == ("t", data)


BAD_CONSTANT = msgpack.packb(msgpack.ExtType(79, msgpack.packb(5)))
ARRAY_MAP_KEY = msgpack.packb({(1, 2): "v"})
# A map whose value is not UTF-8, followed by a stray byte.
NON_UTF8_THEN_EXTRA = b"\x81\xa1k\xa1\xff\x01"

INVALID_DATA = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\xc1", id="reserved-byte"),
    pytest.param(b"\x82\xa1a", id="truncated-map"),
    pytest.param(msgpack.packb({}) + b"\x01", id="extra-data"),
    pytest.param(msgpack.packb(msgpack.ExtType(78, b"not a date")), id="bad-datetime"),
    pytest.param(msgpack.packb(msgpack.ExtType(78, b"\xff\xfe")), id="non-ascii-datetime"),
    pytest.param(BAD_CONSTANT, id="constant-not-pair"),
    pytest.param(msgpack.packb(msgpack.ExtType(79, b"\xc1")), id="constant-not-msgpack"),
    pytest.param(ARRAY_MAP_KEY, id="array-map-key"),
    pytest.param(NON_UTF8_THEN_EXTRA, id="non-utf8-then-extra-data"),
]


@pytest.mark.parametrize("packed", INVALID_DATA)
def test_invalid_data_frame_error(packed: bytes) -> None:
    with pytest.raises(FrameError):
        unpack_data(packed)


def test_frame_without_separator() -> None:
    with pytest.raises(FrameError):
        split_frame(b"salt/auth" + msgpack.packb({}))


# JSON encoding of the special types


SPECIAL_VALUES = [
    pytest.param(b"\x00\x01\xfe\xff", id="bytes"),
    pytest.param(bytearray(b"\x00"), id="bytearray"),
    pytest.param(datetime.datetime(2026, 12, 4, 19, 40, 38, 315758), id="datetime"),
    pytest.param(datetime.datetime(2026, 12, 4, 19, 40, 38), id="datetime-no-microseconds"),
    pytest.param(
        datetime.datetime(2026, 12, 4, 19, 40, tzinfo=datetime.timezone.utc), id="datetime-utc"
    ),
    pytest.param(datetime.date(2026, 12, 4), id="date"),
    pytest.param({"a", "b"}, id="set"),
    pytest.param(frozenset({1, 2}), id="frozenset"),
    pytest.param(set(), id="empty-set"),
    pytest.param(msgpack.ExtType(5, b"\x01\x02"), id="ext"),
    pytest.param([msgpack.ExtType(5, b"")], id="ext-in-list"),
    pytest.param(SaltConstant("NOT_SET", None), id="salt-constant"),
    pytest.param(SaltConstant("LIMIT", b"\xff"), id="salt-constant-bytes"),
    pytest.param(SaltConstant("LIMIT", math.inf), id="salt-constant-inf"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="minus-inf"),
    pytest.param([1, math.inf, {"x": -math.inf}], id="inf-nested"),
    pytest.param({"$bytes": "AA==", "other": 1}, id="dollar-key-with-others"),
]


@pytest.mark.parametrize("value", SPECIAL_VALUES)
def test_json_special_round_trip(value: Any) -> None:
    assert decode_payload(encode_json("t", {"v": value}))[1]["v"] == value


def test_json_nan_round_trip() -> None:
    assert math.isnan(decode_payload(encode_json("t", {"v": math.nan}))[1]["v"])


def test_json_payload_shape() -> None:
    assert json.loads(encode_json("salt/auth", {"id": "web01"})) == {
        "tag": "salt/auth",
        "data": {"id": "web01"},
    }


def test_json_payload_utf8() -> None:
    assert "caf\u00e9".encode() in encode_json("t", {"v": "caf\u00e9"})


def test_json_map_keys_become_strings() -> None:
    data = {1: "a", None: "b", False: "c", b"k": "d", 1.5: "e"}

    assert decode_payload(encode_json("t", data))[1] == {
        "1": "a",
        "null": "b",
        "false": "c",
        "k": "d",
        "1.5": "e",
    }


def test_json_unencodable_raises() -> None:
    with pytest.raises(EncodeError) as caught:
        encode_json("t", {"v": object()})

    assert caught.value.kind == "json"


def test_json_too_deep_raises() -> None:
    nested: list[Any] = []
    for _ in range(5000):
        nested = [nested]

    with pytest.raises(EncodeError) as caught:
        encode_json("t", nested)

    assert caught.value.kind == "json"


# decode_payload


def test_decode_sniffs_json() -> None:
    assert decode_payload(b'{"tag":"a","data":{"b":1}}') == ("a", {"b": 1})


def test_decode_sniffs_msgpack() -> None:
    payload = encode_msgpack("a", msgpack.packb({"b": 1}))

    assert decode_payload(payload) == ("a", {"b": 1})


def test_decode_msgpack_special_types() -> None:
    when = datetime.datetime(2026, 12, 4, 19, 40, 38, 1)
    payload = encode_msgpack("a", pack_data({"t": when, "c": SaltConstant("NOT_SET", None)}))

    assert decode_payload(payload)[1] == {"t": when, "c": SaltConstant("NOT_SET", None)}


INVALID_PAYLOADS = [
    pytest.param(b"", None, id="empty"),
    pytest.param(b"not json", None, id="text"),
    pytest.param(b"{", None, id="broken-json"),
    pytest.param(b"[1,2]", None, id="json-array"),
    pytest.param(b'{"tag":"a"}', None, id="json-without-data"),
    pytest.param(b'{"data":1}', None, id="json-without-tag"),
    pytest.param(b'{"tag":"\xff","data":1}', None, id="json-not-utf8"),
    pytest.param(b'{"tag":"a","data":1}', "text/plain", id="unknown-content-type"),
    pytest.param(b'{"tag":"a","data":1}', CONTENT_TYPE_MSGPACK, id="json-as-msgpack"),
    pytest.param(msgpack.packb([1, 2]), None, id="msgpack-array"),
    pytest.param(msgpack.packb({"tag": "a"}), None, id="msgpack-without-data"),
    pytest.param(msgpack.packb({"tag": "a", "data": 1}) + b"\x00", None, id="msgpack-extra"),
    pytest.param(
        msgpack.packb({"tag": "a", "data": msgpack.ExtType(79, msgpack.packb(1))}),
        None,
        id="msgpack-bad-constant",
    ),
    pytest.param(msgpack.packb({"tag": "a", "data": {(1,): 1}}), None, id="msgpack-array-key"),
]


@pytest.mark.parametrize(("payload", "content_type"), INVALID_PAYLOADS)
def test_decode_invalid_raises(payload: bytes, content_type: str | None) -> None:
    with pytest.raises(ValueError):
        decode_payload(payload, content_type)


# Headers


def test_headers_size_plain() -> None:
    headers = {"Salt-Tag": "salt/auth", "Nats-Msg-Id": "abc"}

    assert headers_size(headers) == len(nats_py_header_block(headers))


def test_headers_size_utf8_value() -> None:
    headers = {"X-Note": "caf\u00e9 \U0001f600"}

    assert headers_size(headers) == len(nats_py_header_block(headers))


def test_headers_size_empty() -> None:
    assert headers_size({}) == len(nats_py_header_block({}))


@pytest.mark.parametrize(
    "tag",
    [e["tag"] for e in REAL_EVENTS[:8]] + ["custom/caf\u00e9", " lead/trail ", "100%/x\ny"],
)
def test_headers_size_of_encoder_headers(tag: str) -> None:
    data = {"id": "web\u00e9 01", "traceparent": TRACEPARENT}
    encoded = make_encoder(master_id="m\u00e4ster").encode(SaltEvent.pack(tag, data), "msg-1", MIB)

    assert headers_size(encoded.headers) == len(nats_py_header_block(encoded.headers))


def test_encoded_size_counts_headers() -> None:
    encoded = make_encoder().encode(SaltEvent.pack("salt/auth", {"id": "a"}), "msg-1", MIB)

    assert encoded.size == len(encoded.payload) + headers_size(encoded.headers)


def test_origin_from_id() -> None:
    assert origin_of(JOB_TAG, {"id": "web01"}) == "web01"


@pytest.mark.parametrize(
    "data",
    [{"jid": "1"}, {"id": ""}, {"id": 5}, {"id": None}, "text", None, ["web01"]],
)
def test_origin_absent(data: Any) -> None:
    assert origin_of("salt/x", data) is None


def test_traceparent_top_level() -> None:
    assert traceparent_of({"traceparent": TRACEPARENT}) == TRACEPARENT


def test_traceparent_nested() -> None:
    # event.send from a minion wraps the caller's data under "data".
    assert traceparent_of({"id": "web01", "data": {"traceparent": TRACEPARENT}}) == TRACEPARENT


def test_traceparent_top_level_wins() -> None:
    data = {"traceparent": TRACEPARENT, "data": {"traceparent": "00-other"}}

    assert traceparent_of(data) == TRACEPARENT


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"traceparent": 5},
        {"traceparent": ""},
        {"traceparent": "x" * 129},
        {"traceparent": "00-abc\r\nInjected: yes"},
        {"data": "not a dict"},
        {"data": {"traceparent": None}},
        "text",
        None,
    ],
)
def test_traceparent_absent(data: Any) -> None:
    assert traceparent_of(data) is None


@pytest.mark.parametrize(
    "minion_id",
    [
        "web01.example.com",
        "100%",
        "%41",
        "web 01",
        " padded ",
        "caf\u00e9",
        "\u65e5\u672c",
        "\U0001f600",
        "tab\there",
        "line\nbreak",
        "lone\udcff",
        "",
    ],
)
def test_id_quote_round_trip(minion_id: str) -> None:
    assert unquote_id(quote_id(minion_id)) == minion_id


@pytest.mark.parametrize("minion_id", ["web 01", "caf\u00e9", "100%", "line\nbreak", " x "])
def test_quoted_id_is_header_safe(minion_id: str) -> None:
    quoted = quote_id(minion_id)

    assert quoted.isascii()
    assert quoted.isprintable()
    assert " " not in quoted


def test_plain_id_not_quoted() -> None:
    assert quote_id("web01.example.com") == "web01.example.com"


# EventEncoder


def test_encoder_subject() -> None:
    encoded = make_encoder(subject_prefix="site1").encode(
        SaltEvent.pack(JOB_TAG, JOB_FIELDS), "msg-1", MIB
    )

    assert encoded.subject == subjects.tag_to_subject(JOB_TAG, "site1")


def test_encoder_long_tag_subject() -> None:
    tag = "custom/" + "x" * 300
    encoded = make_encoder(max_subject_bytes=128).encode(SaltEvent.pack(tag, {}), "m", MIB)

    assert encoded.subject == subjects.tag_to_subject(tag, "salt.events", 128)


def test_encoder_long_tag_header() -> None:
    tag = "custom/" + "x" * 300
    encoded = make_encoder(max_subject_bytes=128).encode(SaltEvent.pack(tag, {}), "m", MIB)

    assert encoded.headers[HEADER_TAG] == tag


def test_encoder_headers() -> None:
    data = {**JOB_FIELDS, "traceparent": TRACEPARENT}
    encoded = make_encoder(master_id="master01").encode(SaltEvent.pack(JOB_TAG, data), "msg-1", MIB)

    assert encoded.headers == {
        HEADER_TAG: JOB_TAG,
        HEADER_MASTER: "master01",
        HEADER_ORIGIN: "web01",
        HEADER_CONTENT_TYPE: CONTENT_TYPE_JSON,
        HEADER_MSG_ID: "msg-1",
        HEADER_TRACEPARENT: TRACEPARENT,
    }


def test_encoder_no_origin_header() -> None:
    encoded = make_encoder().encode(SaltEvent.pack("salt/job/1/new", {"jid": "1"}), "m", MIB)

    assert HEADER_ORIGIN not in encoded.headers


def test_encoder_no_traceparent_header() -> None:
    encoded = make_encoder().encode(SaltEvent.pack(JOB_TAG, JOB_FIELDS), "m", MIB)

    assert HEADER_TRACEPARENT not in encoded.headers


def test_encoder_msgpack_content_type() -> None:
    encoded = make_encoder(payload_format="msgpack").encode(
        SaltEvent.pack(JOB_TAG, JOB_FIELDS), "m", MIB
    )

    assert encoded.headers[HEADER_CONTENT_TYPE] == CONTENT_TYPE_MSGPACK


def test_encoder_msgpack_payload_reuses_frame() -> None:
    _, packed = split_frame(SaltEvent.pack(JOB_TAG, JOB_FIELDS))
    encoded = make_encoder(payload_format="msgpack").encode(
        SaltEvent.pack(JOB_TAG, JOB_FIELDS), "m", MIB
    )

    assert encoded.payload.endswith(packed)


def test_encoder_json_payload() -> None:
    encoded = make_encoder().encode(SaltEvent.pack(JOB_TAG, JOB_FIELDS), "m", MIB)

    assert decode_payload(encoded.payload, CONTENT_TYPE_JSON) == (JOB_TAG, JOB_FIELDS)


def test_encoder_quotes_ids() -> None:
    encoded = make_encoder(master_id="m\u00e4ster 1").encode(
        SaltEvent.pack(JOB_TAG, {"id": "web 01%"}), "m", MIB
    )

    assert unquote_id(encoded.headers[HEADER_MASTER]) == "m\u00e4ster 1"
    assert unquote_id(encoded.headers[HEADER_ORIGIN]) == "web 01%"


def test_non_ascii_tag_header_encoding() -> None:
    tag = "custom/caf\u00e9"
    encoded = make_encoder().encode(SaltEvent.pack(tag, {}), "m", MIB)

    assert encoded.headers[HEADER_TAG_ENCODING] == "percent"
    assert encoded.headers[HEADER_TAG].isascii()
    assert subjects.decode_header_value(encoded.headers[HEADER_TAG], True) == tag


def test_ascii_tag_no_header_encoding() -> None:
    encoded = make_encoder().encode(SaltEvent.pack("custom/cafe", {}), "m", MIB)

    assert HEADER_TAG_ENCODING not in encoded.headers


def test_encoder_rejects_unknown_format() -> None:
    with pytest.raises(ValueError):
        make_encoder(payload_format="yaml")


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"salt/auth", id="no-separator"),
        pytest.param(b"salt/auth\n\n\xc1", id="bad-msgpack"),
        pytest.param(b"salt/auth\n\n" + BAD_CONSTANT, id="bad-constant"),
        pytest.param(b"salt/auth\n\n" + ARRAY_MAP_KEY, id="array-map-key"),
        pytest.param(b"salt/auth\n\n" + NON_UTF8_THEN_EXTRA, id="non-utf8-extra-data"),
    ],
)
def test_invalid_frame_error(frame: bytes) -> None:
    with pytest.raises(EncodeError) as caught:
        make_encoder().encode(frame, "m", MIB)

    assert caught.value.kind == "invalid_frame"


def test_deep_event_json_error() -> None:
    nested: list[Any] = []
    for _ in range(1000):
        nested = [nested]
    frame = SaltEvent.pack("custom/deep", {"x": nested})

    with pytest.raises(EncodeError) as caught:
        make_encoder().encode(frame, "m", MIB)

    assert caught.value.kind == "json"


# Size policy


def big_return_frame() -> bytes:
    return SaltEvent.pack(JOB_TAG, {**JOB_FIELDS, "return": "x" * (2 * MIB), "retcode": 0})


FORMATS = ["json", "msgpack"]


@pytest.mark.parametrize("payload_format", FORMATS)
def test_small_event_not_truncated(payload_format: str) -> None:
    encoded = make_encoder(payload_format=payload_format).encode(
        SaltEvent.pack(JOB_TAG, JOB_FIELDS), "m", MIB
    )

    assert encoded.truncated_values == 0
    assert HEADER_TRUNCATED not in encoded.headers


@pytest.mark.parametrize("payload_format", FORMATS)
def test_truncate_fits_max_payload(payload_format: str) -> None:
    encoded = make_encoder(payload_format=payload_format).encode(big_return_frame(), "m", MIB)

    assert encoded.size <= MIB


@pytest.mark.parametrize("payload_format", FORMATS)
def test_truncate_header_counts_values(payload_format: str) -> None:
    encoded = make_encoder(payload_format=payload_format).encode(big_return_frame(), "m", MIB)

    assert encoded.truncated_values == 1
    assert encoded.headers[HEADER_TRUNCATED] == str(encoded.truncated_values)


@pytest.mark.parametrize("payload_format", FORMATS)
def test_truncate_keeps_small_fields(payload_format: str) -> None:
    encoded = make_encoder(payload_format=payload_format).encode(big_return_frame(), "m", MIB)
    tag, data = decode_payload(encoded.payload, encoded.headers[HEADER_CONTENT_TYPE])

    assert tag == JOB_TAG
    assert data["jid"] == JOB_FIELDS["jid"]
    assert data["id"] == JOB_FIELDS["id"]
    assert data["fun"] == JOB_FIELDS["fun"]
    assert data["retcode"] == 0


@pytest.mark.parametrize("payload_format", FORMATS)
def test_truncate_marker_replaces_value(payload_format: str) -> None:
    encoded = make_encoder(payload_format=payload_format).encode(big_return_frame(), "m", MIB)
    _, data = decode_payload(encoded.payload, encoded.headers[HEADER_CONTENT_TYPE])

    assert data["return"].startswith(MARKER_START)
    # The estimate counts the two quotes around a JSON string.
    assert 2 * MIB <= marker_size(data["return"]) <= 2 * MIB + 2


@pytest.mark.parametrize("payload_format", FORMATS)
def test_truncate_many_small_strings(payload_format: str) -> None:
    lines = [f"line {i:05d}: some output of a long-running command" for i in range(50_000)]
    frame = SaltEvent.pack(JOB_TAG, {**JOB_FIELDS, "return": lines})
    encoded = make_encoder(payload_format=payload_format).encode(frame, "m", MIB)
    _, data = decode_payload(encoded.payload, encoded.headers[HEADER_CONTENT_TYPE])

    assert encoded.size <= MIB
    assert encoded.truncated_values >= 1
    assert data["jid"] == JOB_FIELDS["jid"]


@pytest.mark.parametrize("payload_format", FORMATS)
def test_truncate_keeps_fitting_values(payload_format: str) -> None:
    # Removing "big" alone is enough, so "medium" must stay.
    data = {**JOB_FIELDS, "return": {"big": "b" * (2 * MIB), "medium": "m" * 100_000}}
    frame = SaltEvent.pack(JOB_TAG, data)
    encoded = make_encoder(payload_format=payload_format).encode(frame, "m", MIB)
    _, decoded = decode_payload(encoded.payload, encoded.headers[HEADER_CONTENT_TYPE])

    assert decoded["return"]["medium"] == "m" * 100_000
    assert decoded["return"]["big"].startswith(MARKER_START)


@pytest.mark.parametrize("payload_format", FORMATS)
def test_truncate_count_matches_markers(payload_format: str) -> None:
    # Control characters take six bytes each in JSON but count as one in the
    # estimate, so the first pass falls short and a second pass runs.
    values = {f"k{i}": "\x01" * 3000 for i in range(400)}
    frame = SaltEvent.pack(JOB_TAG, {**JOB_FIELDS, "return": values})
    encoded = make_encoder(payload_format=payload_format).encode(frame, "m", MIB)
    _, data = decode_payload(encoded.payload, encoded.headers[HEADER_CONTENT_TYPE])

    assert encoded.size <= MIB
    assert encoded.truncated_values == count_markers(data)


def test_truncate_marker_keeps_original_size() -> None:
    values = {f"k{i}": "\x01" * 3000 for i in range(400)}
    frame = SaltEvent.pack(JOB_TAG, {**JOB_FIELDS, "return": values})
    encoded = make_encoder().encode(frame, "m", MIB)
    _, data = decode_payload(encoded.payload)

    assert marker_size(data["return"]) > MIB


def test_truncate_spread_top_level() -> None:
    data = {**JOB_FIELDS, **{f"key{i}": "v" * 1000 for i in range(2100)}}
    encoded = make_encoder().encode(SaltEvent.pack("custom/wide", data), "m", MIB)
    _, decoded = decode_payload(encoded.payload)

    assert encoded.size <= MIB
    assert encoded.truncated_values == count_markers(decoded)
    assert decoded["id"] == "web01"


@pytest.mark.parametrize("payload_format", FORMATS)
def test_oversize_drop_raises(payload_format: str) -> None:
    encoder = make_encoder(payload_format=payload_format, oversize="drop")

    with pytest.raises(EncodeError) as caught:
        encoder.encode(big_return_frame(), "m", MIB)

    assert caught.value.kind == "oversize"


@pytest.mark.parametrize("payload_format", FORMATS)
def test_untruncatable_raises(payload_format: str) -> None:
    frame = SaltEvent.pack("custom/blob", "x" * (2 * MIB))

    with pytest.raises(EncodeError) as caught:
        make_encoder(payload_format=payload_format).encode(frame, "m", MIB)

    assert caught.value.kind == "oversize"


def test_truncate_data_picks_smallest_sufficient() -> None:
    data = {"a": "a" * 100, "b": "b" * 1000, "c": "c" * 5000}
    truncated, replaced = truncate_data(data, 500)

    assert replaced == 1
    assert truncated["b"].startswith(MARKER_START)
    assert truncated["a"] == data["a"]
    assert truncated["c"] == data["c"]


def test_truncate_data_copies() -> None:
    data = {"a": ["x" * 1000]}
    truncate_data(data, 500)

    assert data == {"a": ["x" * 1000]}


def test_truncate_data_zero_excess() -> None:
    assert truncate_data({"a": "x" * 1000}, 0) == ({"a": "x" * 1000}, 0)


def test_truncate_data_scalar_root() -> None:
    assert truncate_data("x" * 1000, 500) == ("x" * 1000, 0)


def test_truncate_data_second_pass_keeps_markers() -> None:
    first, _ = truncate_data({"a": "a" * 5000, "b": "b" * 5000}, 4000)
    second, replaced = truncate_data(first, 4000)

    assert replaced == 2
    assert count_markers(second) == 2


# Property: JSON round trip

json_keys = st.one_of(st.text(max_size=8).filter(lambda k: not k.startswith("$")), st.integers())
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    any_text,
    st.binary(max_size=20),
)
json_like = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(json_keys, children, max_size=5),
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tag=any_text, data=json_like)
def test_json_round_trip_property(tag: str, data: Any) -> None:
    assert decode_payload(encode_json(tag, data)) == (tag, as_json_shape(data))
