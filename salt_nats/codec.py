"""Event <-> bytes: bus frames, payload encodings, headers and the size policy.

A master bus frame is ``<tag bytes> b"\\n\\n" <msgpack data>``. The payload published
on NATS is one object ``{"tag": ..., "data": ...}``:

* ``application/json``: UTF-8 JSON. Values JSON cannot hold are written as objects
  with a single ``$``-key and decoded back by :func:`decode_payload`:
  ``{"$bytes": "<base64>"}``, ``{"$datetime": "<ISO 8601>"}``, ``{"$date": "..."}``,
  ``{"$set": [...]}``, ``{"$salt_constant": [name, value]}`` for Salt's constant
  types, ``{"$ext": [code, "<base64>"]}`` for other msgpack extension types and
  ``{"$float": "nan" | "inf" | "-inf"}``. Map keys become strings, as JSON requires.
* ``application/msgpack``: the bus frame's own msgpack data inside a two-key map,
  copied without re-encoding; datetimes and Salt constants keep Salt's extension
  types 78 and 79.

This module is pure: it imports neither Salt nor nats-py, so consumers can decode
payloads with it.
"""

from __future__ import annotations

import base64
import bisect
import datetime
import functools
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import msgpack

from salt_nats import subjects

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_MSGPACK = "application/msgpack"
TAG_END = b"\n\n"

# Salt's own msgpack extension type codes (salt/payload.py in 3007 and 3008).
EXT_DATETIME = 78
EXT_SALT_CONSTANT = 79
_SALT_DATETIME_FORMAT = "%Y%m%dT%H:%M:%S.%f"

HEADER_TAG = "Salt-Tag"
HEADER_TAG_ENCODING = "Salt-Tag-Encoding"
HEADER_MASTER = "Salt-Master"
HEADER_ORIGIN = "Salt-Origin"
HEADER_CONTENT_TYPE = "Content-Type"
HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_TRACEPARENT = "traceparent"
HEADER_TRUNCATED = "Salt-Nats-Truncated"

# "NATS/1.0\r\n" before the header lines and "\r\n" after them.
_HEADER_FRAMING_BYTES = 12


@dataclass(frozen=True)
class SaltConstant:
    """Salt's constant type (extension type 79), such as a ``NOT_SET`` marker.

    It is not a tuple on purpose: ``json`` and ``msgpack`` write any tuple as an
    array without calling the ``default`` hook, which would lose the type.
    """

    name: str
    value: Any = None

    def __iter__(self) -> Iterator[Any]:
        """Yield ``name`` and ``value``, so ``name, value = constant`` works."""
        return iter((self.name, self.value))


class FrameError(ValueError):
    """A bus frame lacks the tag separator or its data is not valid msgpack."""


class EncodeError(ValueError):
    """An event cannot be encoded; ``kind`` names the reason for counters and logs."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


# -- bus frames -------------------------------------------------------------------


def split_frame(frame: bytes) -> tuple[str, bytes]:
    """Split a bus frame into its tag and its packed data."""
    tag, sep, packed = frame.partition(TAG_END)
    if not sep:
        raise FrameError("bus frame has no tag separator")
    # Salt writes tags as UTF-8; surrogateescape keeps any other bytes reversible.
    return tag.decode("utf-8", "surrogateescape"), packed


def _ext_hook(code: int, data: bytes) -> Any:
    # Raises ValueError on invalid extension data; unpack_data turns it into FrameError.
    if code == EXT_DATETIME:
        return datetime.datetime.strptime(data.decode("ascii"), _SALT_DATETIME_FORMAT)
    if code == EXT_SALT_CONSTANT:
        return _salt_constant(msgpack.unpackb(data, raw=False))
    return msgpack.ExtType(code, data)


def _salt_constant(fields: Any) -> SaltConstant:
    if not isinstance(fields, list) or len(fields) != 2:
        raise ValueError(f"Salt constant is not a [name, value] pair: {fields!r}")
    return SaltConstant(*fields)


def _unpack(packed: bytes, unicode_errors: str = "strict") -> Any:
    return msgpack.unpackb(
        packed,
        raw=False,
        ext_hook=_ext_hook,
        strict_map_key=False,
        unicode_errors=unicode_errors,
    )


def unpack_data(packed: bytes) -> Any:
    """Decode the msgpack data of a bus frame the way Salt packs it (``use_bin_type``).

    Raises :class:`FrameError` on any data that does not decode.
    """
    try:
        try:
            return _unpack(packed)
        except UnicodeDecodeError:
            # A str value that is not UTF-8. surrogateescape keeps its bytes, and the
            # JSON encoder escapes the surrogates, so nothing is lost.
            return _unpack(packed, unicode_errors="surrogateescape")
    # TypeError: a map key that is an array, which decodes as an unhashable list.
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise FrameError(f"event data is not valid msgpack: {exc}") from exc


def _msgpack_default(obj: Any) -> Any:
    if isinstance(obj, datetime.datetime):
        return msgpack.ExtType(EXT_DATETIME, obj.strftime(_SALT_DATETIME_FORMAT).encode())
    if isinstance(obj, SaltConstant):
        return msgpack.ExtType(EXT_SALT_CONSTANT, msgpack.packb(tuple(obj), use_bin_type=True))
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"cannot pack {type(obj).__name__}")


def pack_data(data: Any) -> bytes:
    """Pack data as Salt does, so :func:`unpack_data` returns it unchanged."""
    return msgpack.packb(
        data, use_bin_type=True, default=_msgpack_default, unicode_errors="surrogateescape"
    )


# -- JSON -------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(obj).decode("ascii")}
    if isinstance(obj, datetime.datetime):
        return {"$datetime": obj.isoformat()}
    if isinstance(obj, datetime.date):
        return {"$date": obj.isoformat()}
    if isinstance(obj, (set, frozenset)):
        return {"$set": list(obj)}
    if isinstance(obj, SaltConstant):
        return {"$salt_constant": [obj.name, obj.value]}
    if isinstance(obj, msgpack.ExtType):
        return {"$ext": [obj.code, base64.b64encode(obj.data).decode("ascii")]}
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def _json_default_fast(obj: Any) -> Any:
    # json writes an ExtType as a plain array without calling the default hook,
    # because ExtType is a tuple. Its data is always bytes, so rejecting bytes here
    # sends every event that may hold an ExtType through _json_safe.
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raise TypeError("bytes are encoded by the slow path")
    return _json_default(obj)


def _json_object_hook(obj: dict[str, Any]) -> Any:
    # NOTE: a dict of the event's own data that has exactly one of these keys
    # decodes as the typed value; Salt's events carry no such keys.
    if len(obj) != 1:
        return obj
    key, value = next(iter(obj.items()))
    decoder = _JSON_DECODERS.get(key)
    if decoder is None:
        return obj
    try:
        return decoder(value)
    except (TypeError, ValueError):
        return obj


def _decode_float(text: str) -> float:
    if text not in ("nan", "inf", "-inf"):
        raise ValueError(text)
    return float(text)


_JSON_DECODERS: dict[str, Callable[[Any], Any]] = {
    "$bytes": lambda v: base64.b64decode(v, validate=True),
    "$datetime": datetime.datetime.fromisoformat,
    "$date": datetime.date.fromisoformat,
    "$set": set,
    "$salt_constant": _salt_constant,
    "$ext": lambda v: msgpack.ExtType(int(v[0]), base64.b64decode(v[1], validate=True)),
    "$float": _decode_float,
}


def _json_safe(obj: Any) -> Any:
    """Copy ``obj`` with the values the fast path rejects made encodable.

    Handles non-finite floats (invalid in JSON), map keys that are not strings,
    sets whose items are not hashable after conversion, and ExtType values, which
    json would write as arrays.
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        if math.isnan(obj):
            return {"$float": "nan"}
        return {"$float": "inf" if obj > 0 else "-inf"}
    if isinstance(obj, dict):
        return {_json_key(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, msgpack.ExtType):
        return _json_default(obj)
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return {"$set": [_json_safe(v) for v in obj]}
    if isinstance(obj, SaltConstant):
        return {"$salt_constant": [_json_safe(obj.name), _json_safe(obj.value)]}
    return obj


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("utf-8", "surrogateescape")
    if isinstance(key, (int, float, bool)) or key is None:
        return json.dumps(key)
    return str(key)


@functools.lru_cache(maxsize=8)
def _json_encoder(default: Callable[[Any], Any], ensure_ascii: bool) -> json.JSONEncoder:
    # One encoder per option set: json.dumps with options builds a new encoder on
    # every call, which cost about a fifth of the encoding time of a small event.
    return json.JSONEncoder(
        default=default, ensure_ascii=ensure_ascii, allow_nan=False, separators=(",", ":")
    )


def _dump_json(obj: Any, default: Callable[[Any], Any] = _json_default) -> bytes:
    text = _json_encoder(default, False).encode(obj)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates from non-UTF-8 input: \u escapes keep them reversible.
        return _json_encoder(default, True).encode(obj).encode("ascii")


def encode_json(tag: str, data: Any) -> bytes:
    """Encode an event as the JSON payload ``{"tag": ..., "data": ...}``."""
    event = {"tag": tag, "data": data}
    try:
        return _dump_json(event, _json_default_fast)
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        return _dump_json(_json_safe(event))
    except (TypeError, ValueError, RecursionError) as exc:
        raise EncodeError("json", f"event data cannot be encoded as JSON: {exc}") from exc


def encode_msgpack(tag: str, packed_data: bytes) -> bytes:
    """Encode an event as the msgpack payload, reusing the bus frame's packed data."""
    return b"".join(
        (
            b"\x82",  # fixmap with two entries
            _PACKED_TAG_KEY,
            msgpack.packb(tag, unicode_errors="surrogateescape"),
            _PACKED_DATA_KEY,
            packed_data,
        )
    )


_PACKED_TAG_KEY = msgpack.packb("tag")
_PACKED_DATA_KEY = msgpack.packb("data")


def decode_payload(payload: bytes, content_type: str | None = None) -> tuple[str, Any]:
    """Decode a published payload into ``(tag, data)``, restoring the special types.

    ``content_type`` is the message's ``Content-Type`` header; without one, a payload
    that starts with ``{`` is read as JSON and anything else as msgpack. Raises
    ValueError when the payload does not decode.
    """
    if content_type is None:
        content_type = CONTENT_TYPE_JSON if payload.lstrip()[:1] == b"{" else CONTENT_TYPE_MSGPACK
    if content_type == CONTENT_TYPE_JSON:
        event = json.loads(payload, object_hook=_json_object_hook)
    elif content_type == CONTENT_TYPE_MSGPACK:
        try:
            event = _unpack(payload, unicode_errors="surrogateescape")
        except (TypeError, msgpack.UnpackException) as exc:
            raise ValueError(f"payload is not valid msgpack: {exc}") from exc
    else:
        raise ValueError(f"unknown content type {content_type!r}")
    if not isinstance(event, dict) or "tag" not in event or "data" not in event:
        raise ValueError("payload is not an object with 'tag' and 'data'")
    return event["tag"], event["data"]


# -- headers ----------------------------------------------------------------------


def headers_size(headers: dict[str, str]) -> int:
    """Return the bytes the headers take on the wire, which count against max_payload."""
    size = _HEADER_FRAMING_BYTES
    for key, value in headers.items():
        size += len(key) + len(value.encode("utf-8", "surrogatepass")) + 4
    return size


def headers_size_bound(headers: dict[str, str]) -> int:
    """Return an upper bound of :func:`headers_size` without encoding the values.

    A character takes at most 4 bytes in UTF-8 (3 for a lone surrogate).
    """
    size = _HEADER_FRAMING_BYTES
    for key, value in headers.items():
        size += len(key) + 4 * len(value) + 4
    return size


# Printable ASCII except "%" stays as it is in Salt-Master and Salt-Origin.
_ID_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


@functools.lru_cache(maxsize=4096)
def quote_id(minion_id: str) -> str:
    """Percent-encode a master or minion id for a header; ``unquote`` reverses it."""
    return quote(minion_id, safe=_ID_SAFE, errors="surrogatepass")


def unquote_id(value: str) -> str:
    """Decode a ``Salt-Master`` or ``Salt-Origin`` header value."""
    return unquote(value, errors="surrogatepass")


def origin_of(tag: str, data: Any) -> str | None:
    """Return the minion id that caused an event, where the event shows it."""
    if isinstance(data, dict):
        origin = data.get("id")
        if isinstance(origin, str) and origin:
            return origin
    return None


def traceparent_of(data: Any) -> str | None:
    """Return a W3C ``traceparent`` carried in the event data or its nested ``data``."""
    if not isinstance(data, dict):
        return None
    value = data.get("traceparent")
    if value is None and isinstance(data.get("data"), dict):
        value = data["data"].get("traceparent")
    if isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable():
        return value
    return None


# -- size policy ------------------------------------------------------------------


@dataclass
class _Node:
    container: Any
    key: Any
    size: int
    # Index in ``nodes`` of this value's first descendant. Nodes are recorded in
    # post-order, so the value and everything inside it are nodes[first : own index + 1].
    first: int


class _Marker(str):
    """The text that replaces a removed value; its own type lets a later pass skip it."""


def _estimate(obj: Any, parent: Any, key: Any, nodes: list[_Node]) -> int:
    """Estimate the encoded size of ``obj`` and record every non-root value in ``nodes``.

    The estimate follows JSON's shape (quotes, commas, base64 for bytes); the caller
    re-encodes and checks the real size, so an estimate only steers which values go.
    """
    first = len(nodes)
    if isinstance(obj, str):
        size = len(obj.encode("utf-8", "surrogatepass")) + 2
    elif isinstance(obj, (bytes, bytearray)):
        size = (len(obj) + 2) // 3 * 4 + 14
    elif isinstance(obj, dict):
        size = 2
        for k, v in obj.items():
            size += len(str(k).encode("utf-8", "surrogatepass")) + 4
            size += _estimate(v, obj, k, nodes)
    elif isinstance(obj, (list, tuple)):
        size = 2
        for i, v in enumerate(obj):
            size += _estimate(v, obj, i, nodes) + 1
    else:
        size = 8
    if parent is not None:
        nodes.append(_Node(parent, key, size, first))
    return size


def _marker(size: int) -> _Marker:
    return _Marker(f"[salt-nats: value of about {size} bytes removed to fit max_payload]")


def truncate_data(data: Any, excess: int) -> tuple[Any, int]:
    """Replace values in a copy of ``data`` until its estimated size drops by ``excess``.

    Each step takes the smallest value whose removal covers what is still over the
    limit. When no single value is large enough, it removes the largest top-level
    value and repeats. A marker left by an earlier call is never replaced.
    Returns the new data and the number of markers in it. Tuples become lists.
    """
    data = _mutable_copy(data)
    nodes: list[_Node] = []
    _estimate(data, None, None, nodes)

    # Before the last step only whole top-level values are removed, and removing one
    # changes the estimate of no value that stays. So the estimates are computed once,
    # and each removal marks its value and everything inside it as gone. A value is
    # always larger than anything inside it, so the largest value is a top-level one.
    gains = [-1 if isinstance(n.container[n.key], _Marker) else _gain(n.size) for n in nodes]
    by_gain = sorted(range(len(nodes)), key=gains.__getitem__)
    sorted_gains = [gains[i] for i in by_gain]
    top_level = sorted(
        (i for i, node in enumerate(nodes) if node.container is data),
        key=gains.__getitem__,
        reverse=True,
    )
    removed = bytearray(len(nodes))
    added = 0

    def remove(index: int) -> None:
        node = nodes[index]
        node.container[node.key] = _marker(node.size)
        removed[node.first : index + 1] = b"\x01" * (index + 1 - node.first)

    next_top = 0
    while excess > 0:
        position = bisect.bisect_left(sorted_gains, excess)
        while position < len(by_gain) and removed[by_gain[position]]:
            position += 1
        if position < len(by_gain):
            remove(by_gain[position])
            added += 1
            excess -= sorted_gains[position]
            break

        while next_top < len(top_level) and removed[top_level[next_top]]:
            next_top += 1
        if next_top == len(top_level) or gains[top_level[next_top]] <= 0:
            break
        remove(top_level[next_top])
        added += 1
        excess -= gains[top_level[next_top]]
        next_top += 1

    earlier = sum(
        1
        for i, node in enumerate(nodes)
        if not removed[i] and isinstance(node.container[node.key], _Marker)
    )
    return data, earlier + added


def _gain(size: int) -> int:
    # Bytes saved by replacing a value of this estimated size with its quoted marker.
    return size - len(_marker(size)) - 2


def _mutable_copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _mutable_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_mutable_copy(v) for v in obj]
    return obj


# -- the encoder the engine uses ------------------------------------------------


@dataclass(frozen=True)
class EncodedEvent:
    """A message ready for ``publish``: subject, payload, headers and what was cut."""

    subject: str
    payload: bytes
    headers: dict[str, str]
    truncated_values: int = 0

    @property
    def size(self) -> int:
        """Bytes the message counts against the server's max_payload."""
        return len(self.payload) + headers_size(self.headers)


class EventEncoder:
    """Turn bus frames into NATS messages following one engine's settings."""

    def __init__(
        self,
        *,
        subject_prefix: str,
        master_id: str,
        payload_format: str = "json",
        oversize: str = "truncate",
        max_subject_bytes: int = subjects.DEFAULT_MAX_SUBJECT_BYTES,
    ) -> None:
        if payload_format not in ("json", "msgpack"):
            raise ValueError(f"unknown payload format {payload_format!r}")
        self.subject_prefix = subject_prefix
        self.payload_format = payload_format
        self.oversize = oversize
        self.max_subject_bytes = max_subject_bytes
        self.content_type = CONTENT_TYPE_JSON if payload_format == "json" else CONTENT_TYPE_MSGPACK
        self._master_header = quote_id(master_id)

    def encode(self, frame: bytes, msg_id: str, max_payload: int) -> EncodedEvent:
        """Encode one bus frame; raise :class:`EncodeError` when it cannot be sent.

        ``max_payload`` is the connected server's limit for payload plus headers.
        """
        try:
            tag, packed = split_frame(frame)
            data = unpack_data(packed)
        except FrameError as exc:
            raise EncodeError("invalid_frame", str(exc)) from exc

        subject = subjects.tag_to_subject(tag, self.subject_prefix, self.max_subject_bytes)
        headers = self._headers(tag, data, msg_id)
        payload = self._payload(tag, data, packed)

        if len(payload) + headers_size_bound(headers) <= max_payload:
            return EncodedEvent(subject, payload, headers)
        header_bytes = headers_size(headers)
        if len(payload) + header_bytes <= max_payload:
            return EncodedEvent(subject, payload, headers)
        if self.oversize == "drop":
            raise EncodeError(
                "oversize",
                f"event of {len(payload) + header_bytes} bytes exceeds max_payload "
                f"{max_payload}; dropped (oversize: drop)",
            )
        return self._truncate(subject, tag, data, headers, len(payload), max_payload)

    def _payload(self, tag: str, data: Any, packed: bytes) -> bytes:
        if self.payload_format == "json":
            return encode_json(tag, data)
        return encode_msgpack(tag, packed)

    def _headers(self, tag: str, data: Any, msg_id: str) -> dict[str, str]:
        tag_value, tag_encoded = subjects.encode_header_value(tag)
        headers = {HEADER_TAG: tag_value}
        if tag_encoded:
            headers[HEADER_TAG_ENCODING] = "percent"
        headers[HEADER_MASTER] = self._master_header
        origin = origin_of(tag, data)
        if origin is not None:
            headers[HEADER_ORIGIN] = quote_id(origin)
        headers[HEADER_CONTENT_TYPE] = self.content_type
        headers[HEADER_MSG_ID] = msg_id
        traceparent = traceparent_of(data)
        if traceparent is not None:
            headers[HEADER_TRACEPARENT] = traceparent
        return headers

    def _truncate(
        self,
        subject: str,
        tag: str,
        data: Any,
        headers: dict[str, str],
        payload_size: int,
        max_payload: int,
    ) -> EncodedEvent:
        headers = {**headers, HEADER_TRUNCATED: "0" * 6}
        budget = max_payload - headers_size(headers)
        excess = payload_size - budget

        # The estimates follow JSON's shape and miss escapes, so a pass may fall
        # short; the next pass works on the real size that is still over.
        previous_size = payload_size
        for _ in range(5):
            try:
                data, replaced = truncate_data(data, excess)
                if self.payload_format == "json":
                    payload = encode_json(tag, data)
                else:
                    payload = encode_msgpack(tag, pack_data(data))
            except RecursionError as exc:
                raise EncodeError(
                    "oversize",
                    f"event exceeds max_payload {max_payload} and is nested too deeply "
                    "to truncate; dropped",
                ) from exc
            if len(payload) <= budget and replaced:
                headers[HEADER_TRUNCATED] = str(replaced)
                return EncodedEvent(subject, payload, headers, replaced)
            if len(payload) >= previous_size:
                break  # nothing left that a marker would shorten
            previous_size = len(payload)
            excess = len(payload) - budget
        raise EncodeError(
            "oversize",
            f"event exceeds max_payload {max_payload} even after truncating its values; dropped",
        )
