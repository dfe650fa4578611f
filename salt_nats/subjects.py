"""Map Salt event tags to NATS subjects and back.

A tag such as ``salt/job/20261204194039500871/ret/web01.example.com`` becomes the
subject ``salt.events.salt.job.20261204194039500871.ret.web01%2Eexample%2Ecom``.
Each ``/``-separated segment of the tag is one subject token. Inside a token, every
character that NATS reserves or that is not printable ASCII is percent-encoded as its
UTF-8 bytes, so a consumer recovers the exact tag from the subject.

Subjects longer than ``max_subject_bytes`` are shortened: they keep their leading
tokens and end with a ``%%<digest>`` token, and the full tag then travels in the
``Salt-Tag`` message header (see :func:`tag_from_message`).

The module imports neither Salt nor nats-py, so the engine, the returner, the CLI and
consumer code share one codec. ``docs/subjects.md`` describes the same rules for
consumer authors.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import unquote

__all__ = [
    "DEFAULT_EVENT_PREFIX",
    "DEFAULT_MAX_SUBJECT_BYTES",
    "DEFAULT_RETURN_PREFIX",
    "EMPTY_TOKEN",
    "HIGHEST_MAX_SUBJECT_BYTES",
    "LOWEST_MAX_SUBJECT_BYTES",
    "PERCENT_ENCODING",
    "SHORTENED_MARKER",
    "TAG_ENCODING_HEADER",
    "TAG_HEADER",
    "ReturnSubjectFields",
    "ShortenedSubjectError",
    "decode_header_value",
    "decode_token",
    "encode_header_value",
    "encode_token",
    "is_shortened_subject",
    "parse_return_subject",
    "return_subject",
    "subject_to_tag",
    "tag_from_message",
    "tag_glob_to_subject",
    "tag_headers",
    "tag_to_subject",
    "validate_prefix",
    "validate_subject_settings",
]

DEFAULT_EVENT_PREFIX = "salt.events"
DEFAULT_RETURN_PREFIX = "salt.returns"
DEFAULT_MAX_SUBJECT_BYTES = 1024

# nats-server rejects a PUB or HPUB control line longer than its `max_control_line`
# setting (4096 bytes by default, MAX_CONTROL_LINE_SIZE in nats-server's source) and
# closes the connection. The line also carries the verb, an optional reply
# subject and the header and payload sizes, so a subject stays well below 4096.
LOWEST_MAX_SUBJECT_BYTES = 64
HIGHEST_MAX_SUBJECT_BYTES = 3800

# The token for an empty tag segment. A literal "%" is always written as "%25", so a
# token that is exactly "%" is unambiguous.
EMPTY_TOKEN = "%"

# The last token of a shortened subject is this marker plus the first 16 hex digits
# of the SHA-256 digest of the tag. Normal encoding never writes "%%".
SHORTENED_MARKER = "%%"
_DIGEST_HEX_DIGITS = 16
_MARKER_LENGTH = len(SHORTENED_MARKER) + _DIGEST_HEX_DIGITS
_MARKER_RE = re.compile(f"{SHORTENED_MARKER}[0-9a-f]{{{_DIGEST_HEX_DIGITS}}}")

TAG_HEADER = "Salt-Tag"
TAG_ENCODING_HEADER = "Salt-Tag-Encoding"
PERCENT_ENCODING = "percent"

# Characters that a token carries unchanged: printable ASCII except the subject
# separator ".", the wildcards "*" and ">", the escape "%" and the tag separator "/".
# A tag segment never contains "/" because tags are split on it. Encoding "/" anyway
# keeps returner tokens (minion id, function, jid) decodable to the same value.
_SAFE_CHARACTERS = frozenset(chr(code) for code in range(0x21, 0x7F)) - frozenset("./*>%")
_SAFE_CLASS = "[" + "".join(re.escape(char) for char in sorted(_SAFE_CHARACTERS)) + "]"
_SAFE_TOKEN_RE = re.compile(f"{_SAFE_CLASS}+")
_SAFE_TAG_RE = re.compile(f"{_SAFE_CLASS}+(?:/{_SAFE_CLASS}+)*")
_TOKEN_PART_RE = re.compile(f"{_SAFE_CLASS}+|%[0-9A-F]{{2}}")

# The text each UTF-8 byte becomes inside a token, indexed by byte value.
_TOKEN_TEXT_BY_BYTE = tuple(
    chr(byte) if chr(byte) in _SAFE_CHARACTERS else f"%{byte:02X}" for byte in range(256)
)

# A header value that is sent as it is: printable ASCII with no leading or trailing
# space. nats-py 2.16 strips that whitespace from header values when it publishes and
# parses them, and replaces CR and LF with spaces, so any other value is encoded.
_PLAIN_HEADER_VALUE_RE = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?")
_HEADER_TEXT_BY_BYTE = tuple(
    chr(byte) if 0x21 <= byte <= 0x7E and byte != 0x25 else f"%{byte:02X}" for byte in range(256)
)
_INVALID_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")

_GLOB_CHARACTERS_RE = re.compile(r"[*?\[]")

# Tags up to this many characters go through the subject cache. Longer tags are rare
# and would make the cache's memory use depend on what minions send.
# Measured with timeit over the 64 tags in tests/data/real-events-salt3008.jsonl
# (Python 3.11, 2-core Intel Xeon VM): about 0.12 us per call on a cache hit, 0.6 to
# 0.9 us on a miss. Job tags carry a new jid each time, so they usually miss.
_CACHED_TAG_LENGTH = 256
_SUBJECT_CACHE_SIZE = 4096


class ShortenedSubjectError(ValueError):
    """Error for a shortened subject, whose full tag is only in the message headers."""

    def __init__(self, subject: str) -> None:
        super().__init__(
            f"subject {subject!r} is shortened because its tag is too long for the subject "
            f"limit; read the full tag from the {TAG_HEADER!r} header, for example with "
            "tag_from_message()"
        )
        self.subject = subject


class ReturnSubjectFields(NamedTuple):
    """The job return fields that a returner subject carries."""

    minion_id: str
    fun: str
    jid: str


# Tokens


def encode_token(segment: str) -> str:
    """Encode one tag segment (or one returner field) as a subject token.

    An empty segment becomes :data:`EMPTY_TOKEN`. Every other character outside
    printable ASCII, and each of ``.``, ``*``, ``>``, ``%`` and ``/``, becomes the
    ``%XX`` escapes of its UTF-8 bytes, with lone surrogates encoded as well.
    """
    if _SAFE_TOKEN_RE.fullmatch(segment):
        return segment
    if not segment:
        return EMPTY_TOKEN

    data = segment.encode("utf-8", "surrogatepass")
    return "".join([_TOKEN_TEXT_BY_BYTE[byte] for byte in data])


def decode_token(token: str) -> str:
    """Decode a subject token written by :func:`encode_token`.

    Raises ValueError for any token that ``encode_token`` never writes. That includes
    an empty token, a ``%`` without two uppercase hex digits after it, a character that
    must be escaped, escapes that are not UTF-8, and an escape of a safe character.
    """
    if _SAFE_TOKEN_RE.fullmatch(token):
        return token
    if token == EMPTY_TOKEN:
        return ""
    if not token:
        raise ValueError(
            f"invalid subject token '': NATS subjects have no empty tokens, and an empty "
            f"tag segment is written as {EMPTY_TOKEN!r}"
        )

    data = bytearray()
    position = 0
    while position < len(token):
        match = _TOKEN_PART_RE.match(token, position)
        if match is None:
            raise ValueError(_describe_invalid_character(token, position))

        part = match.group()
        if part[0] == "%":
            data.append(int(part[1:], 16))
        else:
            data += part.encode("ascii")
        position = match.end()

    try:
        segment = data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"invalid subject token {token!r}: its escapes are not valid UTF-8 ({error.reason})"
        ) from error

    canonical = encode_token(segment)
    if canonical != token:
        raise ValueError(
            f"invalid subject token {token!r}: it decodes to {segment!r}, "
            f"which the encoder writes as {canonical!r}"
        )
    return segment


def _describe_invalid_character(token: str, position: int) -> str:
    char = token[position]
    if char == "%":
        return (
            f"invalid subject token {token!r}: '%' at index {position} is not followed "
            "by two uppercase hex digits"
        )
    return (
        f"invalid subject token {token!r}: character {char!r} at index {position} "
        "is always percent-encoded by the encoder"
    )


# Settings


def validate_prefix(prefix: str) -> None:
    """Check that ``prefix`` is a usable NATS publish subject.

    Raises ValueError naming the problem: an empty prefix, a leading or trailing
    ``.``, an empty token, a wildcard, whitespace or a character outside printable
    ASCII.
    """
    if not prefix:
        raise ValueError(
            "subject prefix is empty; set it to a dot-separated subject such as "
            f"{DEFAULT_EVENT_PREFIX!r}"
        )

    for index, char in enumerate(prefix):
        if char in "*>":
            raise ValueError(
                f"subject prefix {prefix!r} contains {char!r}; NATS reads '*' and '>' as "
                "wildcards, which a publish subject must not contain"
            )
        if char.isspace():
            raise ValueError(
                f"subject prefix {prefix!r} contains whitespace {char!r} at index {index}; "
                "NATS subjects cannot contain whitespace"
            )
        if not "\x21" <= char <= "\x7e":
            raise ValueError(
                f"subject prefix {prefix!r} contains {char!r} at index {index}; use only "
                "printable ASCII characters"
            )

    if prefix.startswith(".") or prefix.endswith("."):
        raise ValueError(
            f"subject prefix {prefix!r} starts or ends with '.'; remove the dot, "
            "because salt-nats adds the separator itself"
        )
    if ".." in prefix:
        raise ValueError(
            f"subject prefix {prefix!r} contains an empty token ('..'); "
            "separate its tokens with single dots"
        )


def validate_subject_settings(prefix: str, max_subject_bytes: int) -> None:
    """Check a subject prefix and a subject length limit together.

    Raises ValueError when the prefix is invalid (see :func:`validate_prefix`), when
    ``max_subject_bytes`` is outside 64..3800, or when the prefix leaves no room for
    the shortened-subject marker within the limit.
    """
    validate_prefix(prefix)

    if not LOWEST_MAX_SUBJECT_BYTES <= max_subject_bytes <= HIGHEST_MAX_SUBJECT_BYTES:
        raise ValueError(
            f"max_subject_bytes is {max_subject_bytes}; set it between "
            f"{LOWEST_MAX_SUBJECT_BYTES} and {HIGHEST_MAX_SUBJECT_BYTES}, because "
            "nats-server closes the connection on a control line over 4096 bytes by default"
        )

    longest_prefix = max_subject_bytes - 1 - _MARKER_LENGTH
    if len(prefix) > longest_prefix:
        raise ValueError(
            f"subject prefix {prefix!r} is {len(prefix)} bytes, which leaves no room for a "
            f"tag within max_subject_bytes={max_subject_bytes}; use a prefix of at most "
            f"{longest_prefix} bytes or raise max_subject_bytes"
        )


# Valid settings are cached, so a busy engine checks its prefix once and not per event.
# An invalid setting raises every time, because lru_cache does not store exceptions.
_check_settings = functools.lru_cache(maxsize=64)(validate_subject_settings)


# Event subjects


def tag_to_subject(
    tag: str,
    prefix: str = DEFAULT_EVENT_PREFIX,
    max_subject_bytes: int = DEFAULT_MAX_SUBJECT_BYTES,
) -> str:
    """Build the NATS subject for an event tag.

    The result is at most ``max_subject_bytes`` bytes. A longer subject is shortened
    to its leading whole tokens plus a ``%%<digest>`` token, and the caller must then
    send the tag in the ``Salt-Tag`` header (see :func:`tag_headers`). Raises
    ValueError for an invalid prefix or limit.
    """
    if len(tag) <= _CACHED_TAG_LENGTH:
        return _cached_tag_to_subject(tag, prefix, max_subject_bytes)
    return _build_subject(tag, prefix, max_subject_bytes)


def _build_subject(tag: str, prefix: str, max_subject_bytes: int) -> str:
    _check_settings(prefix, max_subject_bytes)

    # Most tags contain only safe characters and no empty segment, so their
    # subject is the tag with "/" replaced by ".".
    if _SAFE_TAG_RE.fullmatch(tag):
        subject = f"{prefix}.{tag.replace('/', '.')}"
        if len(subject) <= max_subject_bytes:
            return subject
        tokens = tag.split("/")
    else:
        tokens = [encode_token(segment) for segment in tag.split("/")]
        subject = f"{prefix}.{'.'.join(tokens)}"
        if len(subject) <= max_subject_bytes:
            return subject

    return _shorten_subject(tag, tokens, prefix, max_subject_bytes)


_cached_tag_to_subject = functools.lru_cache(maxsize=_SUBJECT_CACHE_SIZE)(_build_subject)


def _shorten_subject(tag: str, tokens: list[str], prefix: str, max_subject_bytes: int) -> str:
    marker = SHORTENED_MARKER + _tag_digest(tag)

    subject_tokens = [prefix]
    length = len(prefix)
    for token in tokens:
        if length + 1 + len(token) + 1 + len(marker) > max_subject_bytes:
            break
        subject_tokens.append(token)
        length += 1 + len(token)

    subject_tokens.append(marker)
    return ".".join(subject_tokens)


def _tag_digest(tag: str) -> str:
    data = tag.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:_DIGEST_HEX_DIGITS]


def is_shortened_subject(subject: str) -> bool:
    """Return whether a subject ends with the shortened-subject marker token."""
    return subject.rpartition(".")[2].startswith(SHORTENED_MARKER)


def subject_to_tag(subject: str, prefix: str = DEFAULT_EVENT_PREFIX) -> str:
    """Decode the event tag from a subject built by :func:`tag_to_subject`.

    Raises :class:`ShortenedSubjectError` for a shortened subject, whose tag is in the
    message headers, and ValueError when the subject is not under ``prefix`` or
    contains a token that the encoder never writes.
    """
    tokens = _split_subject(subject, prefix)

    if tokens[-1].startswith(SHORTENED_MARKER):
        if not _MARKER_RE.fullmatch(tokens[-1]):
            raise ValueError(
                f"subject {subject!r} ends with a malformed shortened-subject token "
                f"{tokens[-1]!r}; expected {SHORTENED_MARKER!r} and {_DIGEST_HEX_DIGITS} "
                "lowercase hex digits"
            )
        raise ShortenedSubjectError(subject)

    segments = []
    for token in tokens:
        segment = decode_token(token)
        if "/" in segment:
            raise ValueError(
                f"invalid subject token {token!r} in {subject!r}: it decodes to a segment "
                "containing '/', which a tag segment never contains"
            )
        segments.append(segment)
    return "/".join(segments)


def _split_subject(subject: str, prefix: str) -> list[str]:
    validate_prefix(prefix)

    head = prefix + "."
    if not subject.startswith(head) or len(subject) == len(head):
        raise ValueError(
            f"subject {subject!r} is not under the prefix {prefix!r}; check that the "
            "consumer uses the same prefix as the publisher"
        )
    return subject[len(head) :].split(".")


# Headers


def encode_header_value(text: str) -> tuple[str, bool]:
    """Make ``text`` safe to send as a NATS header value.

    Returns ``(text, False)`` when ``text`` is printable ASCII with no leading or
    trailing space. Otherwise it returns ``(encoded, True)``, where ``encoded`` has
    every UTF-8 byte outside 0x21..0x7E, and every ``%``, written as ``%XX``.
    """
    if _PLAIN_HEADER_VALUE_RE.fullmatch(text):
        return text, False

    data = text.encode("utf-8", "surrogatepass")
    return "".join([_HEADER_TEXT_BY_BYTE[byte] for byte in data]), True


def decode_header_value(value: str, encoded: bool) -> str:
    """Reverse :func:`encode_header_value`.

    Raises ValueError when ``encoded`` is true and ``value`` has a ``%`` without two
    hex digits after it, or escapes that are not UTF-8.
    """
    if not encoded:
        return value

    invalid = _INVALID_ESCAPE_RE.search(value)
    if invalid is not None:
        raise ValueError(
            f"invalid percent-encoded header value: '%' at index {invalid.start()} "
            "is not followed by two hex digits"
        )
    try:
        return unquote(value, encoding="utf-8", errors="surrogatepass")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"invalid percent-encoded header value: its escapes are not valid UTF-8 "
            f"({error.reason})"
        ) from error


def tag_headers(tag: str) -> dict[str, str]:
    """Build the ``Salt-Tag`` header, and ``Salt-Tag-Encoding`` when it is needed."""
    value, encoded = encode_header_value(tag)
    if encoded:
        return {TAG_HEADER: value, TAG_ENCODING_HEADER: PERCENT_ENCODING}
    return {TAG_HEADER: value}


def tag_from_message(
    subject: str,
    headers: Mapping[str, str] | None = None,
    prefix: str = DEFAULT_EVENT_PREFIX,
) -> str:
    """Recover the event tag of a received message.

    The tag comes from the subject unless the subject is shortened. Then it comes from
    the ``Salt-Tag`` header, which must match the subject's digest and leading tokens.
    Raises ValueError when the subject is invalid, or when it is shortened and the
    header is missing, malformed or does not match.
    """
    try:
        return subject_to_tag(subject, prefix)
    except ShortenedSubjectError as error:
        shortened_error = error

    if headers is None or TAG_HEADER not in headers:
        raise ValueError(
            f"subject {subject!r} is shortened and the message has no {TAG_HEADER!r} "
            "header, so its tag cannot be recovered"
        ) from shortened_error

    encoding = headers.get(TAG_ENCODING_HEADER)
    if encoding is not None and encoding != PERCENT_ENCODING:
        raise ValueError(
            f"unsupported {TAG_ENCODING_HEADER!r} header {encoding!r}; "
            f"the only supported value is {PERCENT_ENCODING!r}"
        )
    tag = decode_header_value(headers[TAG_HEADER], encoded=encoding is not None)

    if not _shortened_subject_matches(subject, prefix, tag):
        raise ValueError(
            f"the {TAG_HEADER!r} header does not match the shortened subject {subject!r}: "
            "the tag's digest or leading tokens differ"
        )
    return tag


def _shortened_subject_matches(subject: str, prefix: str, tag: str) -> bool:
    *kept_tokens, marker = _split_subject(subject, prefix)
    if marker != SHORTENED_MARKER + _tag_digest(tag):
        return False

    # A shortened subject always keeps fewer tokens than its tag has segments.
    segments = tag.split("/")
    if len(kept_tokens) >= len(segments):
        return False
    return all(
        encode_token(segment) == token
        for segment, token in zip(segments, kept_tokens, strict=False)
    )


# Returner subjects


def return_subject(
    minion_id: str,
    fun: str,
    jid: str,
    prefix: str = DEFAULT_RETURN_PREFIX,
    max_subject_bytes: int = DEFAULT_MAX_SUBJECT_BYTES,
) -> str:
    """Build the subject ``<prefix>.<minion id>.<function>.<jid>`` for a job return.

    Each field is one token encoded by :func:`encode_token`, so ``test.ping`` becomes
    ``test%2Eping``. Return subjects are never shortened, because a consumer filters
    on all three tokens. Raises ValueError when the subject would be longer than
    ``max_subject_bytes``, or for an invalid prefix or limit.
    """
    _check_settings(prefix, max_subject_bytes)

    subject = f"{prefix}.{encode_token(minion_id)}.{encode_token(fun)}.{encode_token(jid)}"
    if len(subject) > max_subject_bytes:
        raise ValueError(
            f"return subject for minion {_preview(minion_id)}, function {_preview(fun)} and "
            f"jid {_preview(jid)} is {len(subject)} bytes, over "
            f"max_subject_bytes={max_subject_bytes}; raise max_subject_bytes or use a "
            "shorter prefix"
        )
    return subject


def parse_return_subject(subject: str, prefix: str = DEFAULT_RETURN_PREFIX) -> ReturnSubjectFields:
    """Decode the minion id, function and jid from a returner subject.

    Raises ValueError when the subject is not under ``prefix``, does not have exactly
    three tokens after it, or contains a token that the encoder never writes.
    """
    tokens = _split_subject(subject, prefix)
    if len(tokens) != 3:
        raise ValueError(
            f"return subject {subject!r} has {len(tokens)} tokens after the prefix "
            f"{prefix!r}; expected 3 (minion id, function, jid)"
        )

    minion_id, fun, jid = (decode_token(token) for token in tokens)
    return ReturnSubjectFields(minion_id, fun, jid)


def _preview(text: str, limit: int = 60) -> str:
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


# Subscriptions


def tag_glob_to_subject(
    glob: str,
    prefix: str = DEFAULT_EVENT_PREFIX,
    max_subject_bytes: int = DEFAULT_MAX_SUBJECT_BYTES,
    *,
    star_matches_one_segment: bool = False,
) -> tuple[str, bool]:
    """Translate a Salt tag glob into the narrowest NATS subscription subject.

    ``glob`` uses :mod:`fnmatch` syntax, as Salt's tag matching does. Returns
    ``(subject, exact)``. When ``exact`` is false, the subscription also delivers
    tags that the glob does not match, so the consumer must check each decoded tag
    with ``fnmatch.fnmatchcase``. When ``exact`` is true, the subject alone selects
    exactly the matching tags.

    fnmatch's ``*`` matches ``/`` too, so ``salt/job/*/ret/*`` also matches
    ``salt/job/1/2/ret/x``. By default a glob character before the last segment
    therefore makes the rest of the subscription ``>``. With
    ``star_matches_one_segment=True``, a segment that is exactly ``*`` maps to the
    NATS ``*`` token instead: the subscription is narrower but skips tags in which
    that ``*`` would have to match a ``/``, and ``exact`` is false.

    Pass the publisher's ``max_subject_bytes``, so that the subscription also matches
    shortened subjects. Literal tokens that a shortened subject might lose are then
    replaced by ``>``.
    """
    _check_settings(prefix, max_subject_bytes)

    if not _GLOB_CHARACTERS_RE.search(glob):
        return _literal_subscription(glob, prefix, max_subject_bytes)

    tokens: list[str] = []
    exact = True
    segments = glob.split("/")
    last_index = len(segments) - 1
    for index, segment in enumerate(segments):
        if not _GLOB_CHARACTERS_RE.search(segment):
            tokens.append(encode_token(segment))
        elif segment == "*" and index == last_index:
            # A trailing "*" matches one or more further segments (an empty segment
            # is the token "%"), which is what ">" matches.
            tokens.append(">")
        elif segment == "*" and star_matches_one_segment:
            tokens.append("*")
            exact = False
        else:
            tokens.append(">")
            exact = False
            break

    return _fit_subscription(tokens, prefix, max_subject_bytes, exact)


def _literal_subscription(tag: str, prefix: str, max_subject_bytes: int) -> tuple[str, bool]:
    subject = tag_to_subject(tag, prefix, max_subject_bytes)
    if not is_shortened_subject(subject):
        return subject, True

    # Subscribe to the tokens that the publisher keeps, and let the consumer compare
    # the tag from the header, because the digest token alone is not a safe filter
    # when publisher and consumer settings differ.
    kept_subject = subject.rpartition(".")[0]
    return f"{kept_subject}.>", False


def _fit_subscription(
    tokens: list[str], prefix: str, max_subject_bytes: int, exact: bool
) -> tuple[str, bool]:
    # A shortened subject keeps a leading token only while the marker still fits after
    # it, so a subscription keeps the same tokens and matches the rest with ">".
    subscription_tokens = [prefix]
    length = len(prefix)
    for token in tokens:
        if token == ">":
            subscription_tokens.append(token)
            break
        if length + 1 + len(token) + 1 + _MARKER_LENGTH > max_subject_bytes:
            subscription_tokens.append(">")
            exact = False
            break
        subscription_tokens.append(token)
        length += 1 + len(token)

    return ".".join(subscription_tokens), exact


def subject_matches(pattern: str, subject: str) -> bool:
    """Return True when the NATS subscription subject ``pattern`` matches ``subject``.

    ``*`` matches one token and a final ``>`` matches one or more tokens, as in
    nats-server.
    """
    pattern_tokens = pattern.split(".")
    subject_tokens = subject.split(".")
    for index, token in enumerate(pattern_tokens):
        if token == ">" and index == len(pattern_tokens) - 1:
            return len(subject_tokens) > index
        if index >= len(subject_tokens):
            return False
        if token != "*" and token != subject_tokens[index]:
            return False
    return len(pattern_tokens) == len(subject_tokens)
