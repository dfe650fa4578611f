"""Shared test vectors for the subject, header and payload decoders in every language.

``tests/data/subject-vectors.json`` records what ``salt_nats.subjects`` and
``salt_nats.codec`` do with a set of tags, subjects, headers and payloads. The Node.js
decoder (``examples/node/decode.js``) runs the same file in ``node --test``, so both
sides agree case by case.

Regenerate the file after a deliberate change to the encoding rules::

    .venv/bin/python tests/unit/test_subject_vectors.py

Decoded payload data is recorded in a language-neutral form (see ``describe``): JSON
values stay as they are, and every other type becomes an object with a single
``!``-key, such as ``{"!bytes": "<hex>"}``.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from salt_nats import codec, subjects

VECTORS_FILE = Path(__file__).resolve().parents[1] / "data" / "subject-vectors.json"

# JavaScript numbers hold integers exactly up to this size. Larger ones are "!int".
MAX_SAFE_INTEGER = 2**53 - 1

DEFAULT_SETTINGS = {
    "prefix": subjects.DEFAULT_EVENT_PREFIX,
    "max_subject_bytes": subjects.DEFAULT_MAX_SUBJECT_BYTES,
}


# --- the language-neutral form of decoded data ---------------------------------------


def describe(value: Any) -> Any:
    """Return ``value`` as JSON data, with each non-JSON type as a ``!``-object."""
    if value is None or isinstance(value, (bool, str)):
        return value

    if isinstance(value, int):
        return value if abs(value) <= MAX_SAFE_INTEGER else {"!int": str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            return {"!float": "nan"}
        if math.isinf(value):
            return {"!float": "inf" if value > 0 else "-inf"}
        return value

    if isinstance(value, (bytes, bytearray)):
        return {"!bytes": bytes(value).hex()}
    if isinstance(value, datetime.datetime):
        return {"!datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"!date": value.isoformat()}
    if isinstance(value, (set, frozenset)):
        items = [describe(item) for item in value]
        return {"!set": sorted(items, key=lambda item: json.dumps(item, sort_keys=True))}
    if isinstance(value, codec.SaltConstant):
        return {"!salt_constant": [describe(value.name), describe(value.value)]}
    if isinstance(value, msgpack.ExtType):
        return {"!ext": [value.code, value.data.hex()]}

    if isinstance(value, (list, tuple)):
        return [describe(item) for item in value]
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: describe(item) for key, item in value.items()}
        return {"!map": [[describe(key), describe(item)] for key, item in value.items()]}
    raise TypeError(f"no neutral form for {type(value).__name__}")


# --- cases ------------------------------------------------------------------------------

JID = "20261204194039500871"

# Tags published with the default prefix and subject limit.
TAGS = [
    "salt/auth",
    "minion_start",
    f"salt/job/{JID}/new",
    f"salt/job/{JID}/ret/web01.example.com",
    "salt/minion/web01.example.com/start",
    "file.managed",
    "salt/beacon/web01/inotify//etc/nginx/nginx.conf",
    f"salt/state_result/{JID}/web01/Install nginx",
    "myco/deploy/v1.2 done",
    "custom/wild/*/>",
    "custom/star*/gt>",
    "100%/done",
    "%",
    "%%",
    "%%0123456789abcdef",
    "a/%/b",
    "café",
    "日本語/タグ",
    "deploy/🚀",
    "tab\there",
    "line\nbreak",
    "nul\x00byte",
    "del\x7fchar",
    "100% café",
    " leading space",
    "trailing space ",
    "salt/job/",
    "/",
    "//",
    "/leading",
    "",
    # Salt decodes tag bytes that are not UTF-8 with "surrogateescape".
    "bad\udcffbyte",
    "salt/custom/" + "x" * 4988,
    "x" * 5000,
    "salt/big/" + "/".join(f"segment{index:04d}" for index in range(454)) + "/end",
    "salt/long/" + "é" * 2495,
    "salt/long/" + "a b" * 1664,
]

# Tags published with other settings: (prefix, max_subject_bytes, tag).
TAGS_WITH_SETTINGS = [
    ("site1.salt", 64, f"salt/job/{JID}/ret/web01.example.com"),
    ("site1.salt", 64, "short/tag"),
    ("s", 64, "a" * 45),
    ("s", 64, "a" * 46),
    ("s", 64, "a/" * 30 + "end"),
]

# Subjects to decode with subject_to_tag, including ones the encoder never writes.
SUBJECTS_TO_DECODE = [
    ("salt.events", "salt.events.salt.auth"),
    ("salt.events", "salt.events.%"),
    ("salt.events", "salt.events.%.%"),
    ("salt.events", "salt.events.caf%C3%A9"),
    ("salt.events", "salt.events.%ED%B3%BF"),
    ("salt.events", "salt.events.%ED%A0%80"),
    ("salt.events", "salt.events"),
    ("salt.events", "salt.events."),
    ("salt.events", "salt.eventsX.a"),
    ("salt.events", "other.prefix.a"),
    ("salt.events", "salt.events.a..b"),
    ("salt.events", "salt.events.a."),
    ("salt.events", "salt.events.caf%c3%a9"),
    ("salt.events", "salt.events.%4"),
    ("salt.events", "salt.events.%G1"),
    ("salt.events", "salt.events.%41"),
    ("salt.events", "salt.events.%25%"),
    ("salt.events", "salt.events.a b"),
    ("salt.events", "salt.events.a*"),
    ("salt.events", "salt.events.%FF"),
    ("salt.events", "salt.events.%C3"),
    ("salt.events", "salt.events.%C0%80"),
    ("salt.events", "salt.events.%F4%90%80%80"),
    ("salt.events", "salt.events.%2F"),
    ("salt.events", "salt.events.a.%%db651e42ede287e0"),
    ("salt.events", "salt.events.%%abc"),
    ("salt.events", "salt.events.%%DB651E42EDE287E0"),
    ("salt.events", "salt.events.é"),
    ("site1.salt", "site1.salt.salt.auth"),
    ("site1.salt", "salt.events.salt.auth"),
]

SHORT_TAG = "salt/custom/" + "x" * 4988
SHORT_SUBJECT = subjects.tag_to_subject(SHORT_TAG)
ENCODED_LONG_TAG = "salt/long/" + "é" * 2495
ENCODED_LONG_SUBJECT = subjects.tag_to_subject(ENCODED_LONG_TAG)

# (subject, headers, prefix) for tag_from_message.
MESSAGES = [
    ("salt.events.salt.auth", None, "salt.events"),
    ("salt.events.salt.auth", {"Salt-Tag": "something/else"}, "salt.events"),
    (SHORT_SUBJECT, subjects.tag_headers(SHORT_TAG), "salt.events"),
    (ENCODED_LONG_SUBJECT, subjects.tag_headers(ENCODED_LONG_TAG), "salt.events"),
    (SHORT_SUBJECT, None, "salt.events"),
    (SHORT_SUBJECT, {}, "salt.events"),
    (SHORT_SUBJECT, {"Salt-Tag": SHORT_TAG + "y"}, "salt.events"),
    (SHORT_SUBJECT, {"Salt-Tag": SHORT_TAG, "Salt-Tag-Encoding": "base64"}, "salt.events"),
    (
        ENCODED_LONG_SUBJECT,
        {"Salt-Tag": subjects.tag_headers(ENCODED_LONG_TAG)["Salt-Tag"]},
        "salt.events",
    ),
    (ENCODED_LONG_SUBJECT, {"Salt-Tag": "%zz", "Salt-Tag-Encoding": "percent"}, "salt.events"),
    (
        subjects.tag_to_subject("x" * 5000),
        subjects.tag_headers("x" * 5000),
        "salt.events",
    ),
    ("salt.events.a..b", {"Salt-Tag": "a//b"}, "salt.events"),
]

HEADER_VALUES = [
    "myco/deploy/v1.2 done",
    "100%/done",
    "tab\there",
    "100% café",
    "",
    " ",
    " leading",
    "trailing ",
    "line\nbreak",
    "bad\udcffbyte",
    "deploy/🚀",
]

# Encoded header values to decode, with their encoded flag. Some are invalid.
HEADER_VALUES_TO_DECODE = [
    ("caf%C3%A9", True),
    ("caf%c3%a9", True),
    ("100%25%20done", True),
    ("100%", True),
    ("%zz", True),
    ("%FF", True),
    ("%ED%B3%BF", True),
    ("100%", False),
    ("a+b", True),
]

IDS = ["web01.example.com", "web 01", "café", "100%", "tab\tid", "nats-master", ""]
ID_VALUES_TO_DECODE = ["web%2001", "%zz", "100%", "caf%c3%a9", "a+b"]

RETURN_FIELDS = [
    ("web01.example.com", "test.ping", JID),
    ("web 01", "state.single", JID),
    ("a/b", "cmd.run", "req"),
    ("", "test.ping", JID),
]

RETURN_SUBJECTS_TO_DECODE = [
    "salt.returns.web01%2Eexample%2Ecom.test%2Eping." + JID,
    "salt.returns.web01.test%2Eping",
    "salt.returns.a.b.c.d",
    "salt.returns.a%2Fb.cmd%2Erun.req",
    "salt.returns.%.test%2Eping.1",
]

PING_RETURN = {
    "_stamp": "2026-12-04T20:45:51.373972+00:00",
    "cmd": "_return",
    "fun": "test.ping",
    "fun_args": [],
    "id": "web01.example.com",
    "jid": JID,
    "retcode": 0,
    "return": True,
    "success": True,
    "ts": 1796417151,
    "user": "root",
}

# Event data that the Python encoder writes, as (name, tag, data).
ENCODED_EVENTS = [
    ("ping return", f"salt/job/{JID}/ret/web01.example.com", PING_RETURN),
    ("bytes", "custom/bytes", {"blob": b"\x00\xffbinary", "empty": b""}),
    ("nested bytes", "custom/bytes", {"list": [b"a", [b"bc", {"d": b"def"}]]}),
    (
        "datetimes",
        "custom/time",
        {
            "naive": datetime.datetime(2026, 12, 4, 20, 45, 56, 123456),
            "whole second": datetime.datetime(2026, 12, 4, 20, 45, 56),
            "aware": datetime.datetime(
                2026, 12, 4, 20, 45, 56, 500000, tzinfo=datetime.timezone.utc
            ),
            "offset": datetime.datetime(
                2026,
                12,
                4,
                20,
                45,
                tzinfo=datetime.timezone(-datetime.timedelta(hours=5, minutes=30)),
            ),
            "date": datetime.date(2026, 2, 28),
        },
    ),
    ("set", "custom/set", {"numbers": {3, 1, 2}, "empty": set()}),
    ("salt constant", "custom/constant", {"marker": codec.SaltConstant("NOT_SET", None)}),
    ("ext", "custom/ext", {"ext": msgpack.ExtType(5, b"\x01\x02")}),
    ("floats", "custom/float", {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "x": 1.5}),
    ("int keys", "custom/keys", {1: "one", False: "no", None: "null", 2.5: "x"}),
    ("non-ASCII", "custom/text", {"text": "café 日本語 🚀", "tab": "a\tb"}),
    # A string that was not UTF-8 on the bus; the payload is written in ASCII then.
    ("lone surrogate", "custom/text", {"text": "bad\udcffbyte", "other": "é"}),
    ("big integers", "custom/ints", {"safe": MAX_SAFE_INTEGER, "negative": -(2**40)}),
    ("empty tag", "", {}),
    ("dollar keys", "custom/dollar", {"$bytes": "AA==", "other": 1}),
    ("null data", "custom/null", None),
]

# Data for msgpack payloads, as (name, tag, data).
MSGPACK_EVENTS = [
    ("ping return", f"salt/job/{JID}/ret/web01.example.com", PING_RETURN),
    (
        "salt types",
        "custom/salt",
        {
            "bytes": b"\x00\xff",
            "when": datetime.datetime(2026, 12, 4, 20, 45, 56, 123456),
            "whole second": datetime.datetime(2026, 12, 4, 20, 45, 56),
            "marker": codec.SaltConstant("NOT_SET", [1, "x"]),
            "ext": msgpack.ExtType(5, b"\x01\x02"),
        },
    ),
    (
        "numbers",
        "custom/numbers",
        {
            "small": 1,
            "negative": -33,
            "int16": -30000,
            "uint32": 4000000000,
            "int64": -(2**62),
            "uint64": 2**64 - 1,
            "float": 0.1,
            "nan": math.nan,
        },
    ),
    ("int keys", "custom/keys", {1: "one", "two": 2}),
    ("non-ASCII", "custom/text", {"text": "café 日本語 🚀"}),
    (
        "16-bit lengths",
        "custom/sizes",
        {"text": "x" * 300, "list": list(range(20)), "map": {f"k{i}": i for i in range(20)}},
    ),
    ("dollar keys", "custom/dollar", {"$bytes": "AA=="}),
]

# Payloads written by hand: single "$" objects that do not decode stay as they are,
# and others that the engine never writes. As (name, content type, payload).
HANDWRITTEN_PAYLOADS: list[tuple[str, str | None, bytes]] = [
    ("bytes value is a number", "application/json", b'{"tag":"t","data":{"$bytes":123}}'),
    ("bytes without padding", "application/json", b'{"tag":"t","data":{"$bytes":"YQ"}}'),
    ("bytes with a space", "application/json", b'{"tag":"t","data":{"$bytes":"Y Q=="}}'),
    ("float of another name", "application/json", b'{"tag":"t","data":{"$float":"nope"}}'),
    ("set of lists", "application/json", b'{"tag":"t","data":{"$set":[[1]]}}'),
    (
        "set of bytes",
        "application/json",
        b'{"tag":"t","data":{"$set":[{"$bytes":"AA=="},{"$bytes":"AQ=="}]}}',
    ),
    ("datetime text", "application/json", b'{"tag":"t","data":{"$datetime":"yesterday"}}'),
    ("datetime Z", "application/json", b'{"tag":"t","data":{"$datetime":"2026-12-04T20:45:56Z"}}'),
    (
        "datetime with a space",
        "application/json",
        b'{"tag":"t","data":{"$datetime":"2026-12-04 20:45:56.123"}}',
    ),
    (
        "datetime Feb 30",
        "application/json",
        b'{"tag":"t","data":{"$datetime":"2026-02-30T00:00:00"}}',
    ),
    ("date", "application/json", b'{"tag":"t","data":{"$date":"2024-02-29"}}'),
    ("salt constant of one", "application/json", b'{"tag":"t","data":{"$salt_constant":["x"]}}'),
    ("ext code too large", "application/json", b'{"tag":"t","data":{"$ext":[200,"AA=="]}}'),
    ("unknown dollar key", "application/json", b'{"tag":"t","data":{"$other":1}}'),
    ("two dollar keys", "application/json", b'{"tag":"t","data":{"$bytes":"AA==","$set":[]}}'),
    ("proto key", "application/json", b'{"tag":"t","data":{"__proto__":{"polluted":true}}}'),
    ("no content type, JSON", None, b' \n{"tag":"t","data":[1,2]}'),
    ("no content type, msgpack", None, codec.encode_msgpack("t", codec.pack_data([1, 2]))),
    ("msgpack not UTF-8", "application/msgpack", b"\x82\xa3tag\xa1t\xa4data\xa4a\xffb\xe2"),
    (
        "msgpack encoded surrogate",
        "application/msgpack",
        b"\x82\xa3tag\xa1t\xa4data\xa3\xed\xb3\xbf",
    ),
    ("JSON encoded surrogate", "application/json", b'{"tag":"t","data":"\xed\xb3\xbf"}'),
    ("BOM", "application/json", b'\xef\xbb\xbf{"tag":"t","data":1}'),
    # Errors.
    ("not JSON", "application/json", b"not json"),
    ("JSON array", "application/json", b'[{"tag":"t","data":1}]'),
    ("no data", "application/json", b'{"tag":"t"}'),
    ("no tag", "application/json", b'{"data":1}'),
    ("typed root", "application/json", b'{"$bytes":"AA=="}'),
    ("invalid UTF-8", "application/json", b'{"tag":"\xff","data":1}'),
    ("unknown content type", "text/plain", b'{"tag":"t","data":1}'),
    ("empty content type", "", b'{"tag":"t","data":1}'),
    (
        "msgpack cut short",
        "application/msgpack",
        codec.encode_msgpack("t", codec.pack_data([1]))[:-1],
    ),
    ("msgpack extra data", "application/msgpack", codec.encode_msgpack("t", b"\x01") + b"\x00"),
    ("msgpack array", "application/msgpack", msgpack.packb(["t", 1])),
    ("msgpack unused type", "application/msgpack", b"\xc1"),
    ("msgpack bad datetime", "application/msgpack", b"\x82\xa3tag\xa1t\xa4data\xd4\x4e\x00"),
    ("empty payload", None, b""),
]


# --- building the vectors ------------------------------------------------------------


def _outcome(function: Callable[[], Any]) -> dict[str, Any]:
    """Run ``function`` and record its result, or the kind of error it raises."""
    try:
        result = function()
    except subjects.ShortenedSubjectError:
        return {"error": "shortened"}
    except ValueError:
        return {"error": "invalid"}
    return {"result": result}


def _subject_vector(prefix: str, max_subject_bytes: int, tag: str) -> dict[str, Any]:
    subject = subjects.tag_to_subject(tag, prefix, max_subject_bytes)
    return {
        "tag": tag,
        "prefix": prefix,
        "max_subject_bytes": max_subject_bytes,
        "subject": subject,
        "shortened": subjects.is_shortened_subject(subject),
        "headers": subjects.tag_headers(tag),
    }


def _payload_vector(name: str, content_type: str | None, payload: bytes) -> dict[str, Any]:
    vector: dict[str, Any] = {
        "name": name,
        "content_type": content_type,
        "payload_base64": base64.b64encode(payload).decode("ascii"),
    }
    try:
        tag, data = codec.decode_payload(payload, content_type)
    except ValueError:
        vector["error"] = "invalid"
    else:
        vector["tag"] = tag
        vector["data"] = describe(data)
    return vector


def build_vectors() -> dict[str, Any]:
    """Run every case through the Python package and return the vectors document."""
    subject_vectors = [
        _subject_vector(DEFAULT_SETTINGS["prefix"], DEFAULT_SETTINGS["max_subject_bytes"], tag)
        for tag in TAGS
    ]
    subject_vectors += [_subject_vector(*case) for case in TAGS_WITH_SETTINGS]

    decoded_subjects = []
    for prefix, subject in SUBJECTS_TO_DECODE:
        outcome = _outcome(lambda: subjects.subject_to_tag(subject, prefix))  # noqa: B023
        vector = {"subject": subject, "prefix": prefix}
        if "result" in outcome:
            vector["tag"] = outcome["result"]
        else:
            vector["error"] = outcome["error"]
        decoded_subjects.append(vector)

    messages = []
    for subject, headers, prefix in MESSAGES:
        outcome = _outcome(lambda: subjects.tag_from_message(subject, headers, prefix))  # noqa: B023
        vector = {"subject": subject, "headers": headers, "prefix": prefix}
        if "result" in outcome:
            vector["tag"] = outcome["result"]
        else:
            vector["error"] = outcome["error"]
        messages.append(vector)

    header_values = []
    for text in HEADER_VALUES:
        value, encoded = subjects.encode_header_value(text)
        header_values.append({"text": text, "value": value, "encoded": encoded})

    decoded_header_values = []
    for value, encoded in HEADER_VALUES_TO_DECODE:
        outcome = _outcome(lambda: subjects.decode_header_value(value, encoded))  # noqa: B023
        vector = {"value": value, "encoded": encoded}
        if "result" in outcome:
            vector["text"] = outcome["result"]
        else:
            vector["error"] = outcome["error"]
        decoded_header_values.append(vector)

    ids = [{"id": minion_id, "value": codec.quote_id(minion_id)} for minion_id in IDS]
    ids += [{"id": codec.unquote_id(value), "value": value} for value in ID_VALUES_TO_DECODE]

    return_subjects = [
        {
            "minion_id": minion_id,
            "fun": fun,
            "jid": jid,
            "prefix": subjects.DEFAULT_RETURN_PREFIX,
            "subject": subjects.return_subject(minion_id, fun, jid),
        }
        for minion_id, fun, jid in RETURN_FIELDS
    ]
    decoded_return_subjects = []
    for subject in RETURN_SUBJECTS_TO_DECODE:
        outcome = _outcome(lambda: subjects.parse_return_subject(subject))  # noqa: B023
        vector = {"subject": subject, "prefix": subjects.DEFAULT_RETURN_PREFIX}
        if "result" in outcome:
            minion_id, fun, jid = outcome["result"]
            vector["fields"] = {"minion_id": minion_id, "fun": fun, "jid": jid}
        else:
            vector["error"] = outcome["error"]
        decoded_return_subjects.append(vector)

    payloads = []
    for name, tag, data in ENCODED_EVENTS:
        vector = _payload_vector(f"JSON: {name}", "application/json", codec.encode_json(tag, data))
        vector["encoded_by_engine"] = True
        payloads.append(vector)
    for name, tag, data in MSGPACK_EVENTS:
        payload = codec.encode_msgpack(tag, codec.pack_data(data))
        vector = _payload_vector(f"msgpack: {name}", "application/msgpack", payload)
        vector["encoded_by_engine"] = True
        payloads.append(vector)
    for name, content_type, payload in HANDWRITTEN_PAYLOADS:
        payloads.append(_payload_vector(f"by hand: {name}", content_type, payload))

    return {
        "description": (
            "Test vectors for salt-nats subject, header and payload decoders, written by "
            "tests/unit/test_subject_vectors.py from the Python package. Decoded data uses "
            "a neutral form: JSON values as they are, other types as single-key objects "
            '("!bytes": hex, "!datetime"/"!date": Python isoformat(), "!set": items, '
            '"!salt_constant": [name, value], "!ext": [code, hex], "!float": '
            '"nan"/"inf"/"-inf", "!int": decimal text beyond 2**53-1, "!map": [[key, '
            "value], ...] for maps with keys that are not strings). Set items have no order."
        ),
        "defaults": DEFAULT_SETTINGS,
        "subjects": subject_vectors,
        "decode_subjects": decoded_subjects,
        "messages": messages,
        "header_values": header_values,
        "decode_header_values": decoded_header_values,
        "ids": ids,
        "return_subjects": return_subjects,
        "decode_return_subjects": decoded_return_subjects,
        "payloads": payloads,
    }


def render_vectors() -> str:
    """Return the vectors file's text: indented, with every non-ASCII character escaped.

    ``ensure_ascii`` is needed because some tags hold lone surrogates, which UTF-8
    cannot store.
    """
    return json.dumps(build_vectors(), indent=1, ensure_ascii=True) + "\n"


# --- tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    return json.loads(VECTORS_FILE.read_text(encoding="ascii"))


def test_vectors_file_is_current() -> None:
    assert VECTORS_FILE.read_text(encoding="ascii") == render_vectors(), (
        f"{VECTORS_FILE} differs from what the Python package produces now; if the change "
        "is intended, run `.venv/bin/python tests/unit/test_subject_vectors.py` and commit "
        "the file, and check that `node --test` in examples/node still passes"
    )


def test_vectors_cover_required_cases(vectors: dict[str, Any]) -> None:
    tags = {vector["tag"] for vector in vectors["subjects"]}
    shortened = [vector for vector in vectors["subjects"] if vector["shortened"]]
    encoded_headers = [vector for vector in shortened if "Salt-Tag-Encoding" in vector["headers"]]

    assert {"", "salt/job/", "//", "custom/wild/*/>", "tab\there", "100%/done"} <= tags
    assert any(len(tag) == 5000 for tag in tags)
    assert len(shortened) >= 4
    assert encoded_headers
    assert any(
        vector["error"] == "shortened" for vector in vectors["decode_subjects"] if "error" in vector
    )


def test_tags_encode_to_vector_subjects(vectors: dict[str, Any]) -> None:
    for vector in vectors["subjects"]:
        subject = subjects.tag_to_subject(
            vector["tag"], vector["prefix"], vector["max_subject_bytes"]
        )

        assert subject == vector["subject"], vector["tag"]
        assert len(subject) <= vector["max_subject_bytes"]
        assert subjects.tag_headers(vector["tag"]) == vector["headers"]


def test_vector_subjects_decode_to_tags(vectors: dict[str, Any]) -> None:
    for vector in vectors["subjects"]:
        if vector["shortened"]:
            with pytest.raises(subjects.ShortenedSubjectError):
                subjects.subject_to_tag(vector["subject"], vector["prefix"])
        else:
            assert subjects.subject_to_tag(vector["subject"], vector["prefix"]) == vector["tag"]

        tag = subjects.tag_from_message(vector["subject"], vector["headers"], vector["prefix"])
        assert tag == vector["tag"]


def test_decode_subject_vectors(vectors: dict[str, Any]) -> None:
    for vector in vectors["decode_subjects"]:
        error = vector.get("error")
        if error == "shortened":
            with pytest.raises(subjects.ShortenedSubjectError):
                subjects.subject_to_tag(vector["subject"], vector["prefix"])
        elif error == "invalid":
            with pytest.raises(ValueError) as excinfo:
                subjects.subject_to_tag(vector["subject"], vector["prefix"])
            assert not isinstance(excinfo.value, subjects.ShortenedSubjectError)
        else:
            assert subjects.subject_to_tag(vector["subject"], vector["prefix"]) == vector["tag"]


@pytest.mark.parametrize(
    "subject",
    [
        "salt.events.a..b",
        "salt.events.caf%c3%a9",
        "salt.events.%41",
        "salt.events.%FF",
        "salt.events.%2F",
        "salt.events.%%abc",
    ],
)
def test_noncanonical_subject_is_invalid(vectors: dict[str, Any], subject: str) -> None:
    (vector,) = [v for v in vectors["decode_subjects"] if v["subject"] == subject]

    assert vector["error"] == "invalid"


def test_message_vectors(vectors: dict[str, Any]) -> None:
    for vector in vectors["messages"]:
        if "error" in vector:
            with pytest.raises(ValueError):
                subjects.tag_from_message(vector["subject"], vector["headers"], vector["prefix"])
        else:
            tag = subjects.tag_from_message(vector["subject"], vector["headers"], vector["prefix"])
            assert tag == vector["tag"]


def test_header_value_vectors(vectors: dict[str, Any]) -> None:
    for vector in vectors["header_values"]:
        assert subjects.encode_header_value(vector["text"]) == (vector["value"], vector["encoded"])
        assert subjects.decode_header_value(vector["value"], vector["encoded"]) == vector["text"]

    for vector in vectors["decode_header_values"]:
        if "error" in vector:
            with pytest.raises(ValueError):
                subjects.decode_header_value(vector["value"], vector["encoded"])
        else:
            assert (
                subjects.decode_header_value(vector["value"], vector["encoded"]) == vector["text"]
            )


def test_id_vectors(vectors: dict[str, Any]) -> None:
    for vector in vectors["ids"]:
        assert codec.unquote_id(vector["value"]) == vector["id"]


def test_return_subject_vectors(vectors: dict[str, Any]) -> None:
    for vector in vectors["return_subjects"]:
        subject = subjects.return_subject(
            vector["minion_id"], vector["fun"], vector["jid"], vector["prefix"]
        )
        fields = subjects.parse_return_subject(subject, vector["prefix"])

        assert subject == vector["subject"]
        assert fields == (vector["minion_id"], vector["fun"], vector["jid"])

    for vector in vectors["decode_return_subjects"]:
        if "error" in vector:
            with pytest.raises(ValueError):
                subjects.parse_return_subject(vector["subject"], vector["prefix"])
        else:
            fields = subjects.parse_return_subject(vector["subject"], vector["prefix"])
            assert fields._asdict() == {
                "minion_id": vector["fields"]["minion_id"],
                "fun": vector["fields"]["fun"],
                "jid": vector["fields"]["jid"],
            }


def test_payload_vectors(vectors: dict[str, Any]) -> None:
    for vector in vectors["payloads"]:
        payload = base64.b64decode(vector["payload_base64"])
        if "error" in vector:
            with pytest.raises(ValueError):
                codec.decode_payload(payload, vector["content_type"])
            continue

        tag, data = codec.decode_payload(payload, vector["content_type"])
        assert tag == vector["tag"], vector["name"]
        assert describe(data) == vector["data"], vector["name"]


def test_payload_vectors_keep_malformed_objects(vectors: dict[str, Any]) -> None:
    by_name = {vector["name"]: vector for vector in vectors["payloads"]}

    assert by_name["by hand: bytes value is a number"]["data"] == {"$bytes": 123}
    assert by_name["by hand: float of another name"]["data"] == {"$float": "nope"}
    assert by_name["by hand: set of lists"]["data"] == {"$set": [[1]]}
    assert by_name["by hand: datetime text"]["data"] == {"$datetime": "yesterday"}
    assert by_name["by hand: two dollar keys"]["data"] == {"$bytes": "AA==", "$set": []}


if __name__ == "__main__":
    VECTORS_FILE.write_text(render_vectors(), encoding="ascii")
    print(f"wrote {VECTORS_FILE}", file=sys.stderr)
