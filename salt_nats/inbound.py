"""The opt-in bridge from NATS into the master bus, for reactors.

With an ``inbound:`` entry in the engine config, the engine subscribes to the listed
NATS subjects and fires each message on the master bus under a fixed tag prefix
(default ``nats/inbound/``): a message on ``deploy.web.done`` becomes the event
``nats/inbound/deploy/web/done``. A NATS client can therefore never fire a tag
outside that prefix: the prefix may not start with ``salt``, subject tokens are
used as they are (no percent-decoding, so no ``/``, ``..`` or control characters
can be smuggled in), and tokens outside a small safe alphabet are rejected.

Every message is checked before it reaches the bus: its size (``max_bytes``), its
payload (a JSON object or a msgpack map), the rate (``rate`` events per second with
a ``burst``), and its origin: a message that this master's own engine published
(``Salt-Master`` header equal to this master's id) is dropped, so events cannot
loop between the bus and NATS. Each rejection is counted by reason and logged,
rate-limited.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from salt_nats.codec import HEADER_MASTER, quote_id

log = logging.getLogger(__name__)

DEFAULT_TAG_PREFIX = "nats/inbound/"

REJECT_TOO_LARGE = "too_large"
REJECT_INVALID_PAYLOAD = "invalid_payload"
REJECT_INVALID_SUBJECT = "invalid_subject"
REJECT_RATE_LIMITED = "rate_limited"
REJECT_LOOP = "loop"

_SAFE_TOKEN_RE = re.compile(r"^[A-Za-z0-9_\-=+@:,~]{1,128}$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*/$")
_DURABLE_RE = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
_SUBJECT_TOKEN_RE = re.compile(r"^([A-Za-z0-9_\-=+@:,~]+|\*|>)$")


class InboundConfigError(ValueError):
    """An ``inbound`` option is invalid; the message names the option and the fix."""


class InboundReject(Exception):
    """A NATS message cannot be fired on the bus; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


@dataclass(frozen=True)
class InboundSettings:
    """Settings of the NATS -> bus bridge (the ``inbound`` engine option)."""

    subjects: tuple[str, ...]
    tag_prefix: str = DEFAULT_TAG_PREFIX
    queue_group: str = ""
    durable: str = ""
    stream: str = ""
    max_bytes: int = 65536
    rate: float = 100.0
    burst: int = 200


def parse_inbound_settings(value: Any) -> InboundSettings:
    """Parse the ``inbound`` option; raise :class:`InboundConfigError` when it is invalid."""
    if not isinstance(value, Mapping):
        raise InboundConfigError(
            "inbound must be a mapping with at least 'subjects'; "
            "fix: write inbound: {subjects: [salt.inbound.>]}"
        )
    known = {"subjects", "tag_prefix", "queue_group", "durable", "stream", "max_bytes", "rate"}
    known |= {"burst"}
    for key in value:
        if key not in known:
            raise InboundConfigError(
                f"unknown option inbound.{key}; valid options: {', '.join(sorted(known))}"
            )

    subjects = value.get("subjects")
    if isinstance(subjects, str):
        subjects = [subjects]
    if not isinstance(subjects, (list, tuple)) or not subjects:
        raise InboundConfigError(
            "inbound.subjects is missing or empty; fix: list the NATS subjects to bridge"
        )
    for subject in subjects:
        if not isinstance(subject, str) or not all(
            _SUBJECT_TOKEN_RE.match(token) for token in subject.split(".")
        ):
            raise InboundConfigError(
                f"inbound.subjects has an invalid subject {subject!r}; fix: use tokens of "
                "letters, digits, '_', '-' and the wildcards '*' and '>'"
            )

    prefix = value.get("tag_prefix", DEFAULT_TAG_PREFIX)
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise InboundConfigError(
            f"inbound.tag_prefix {prefix!r} is invalid; fix: use segments of letters, digits, "
            "'_' and '-' separated by '/' and ending with '/', such as nats/inbound/"
        )
    if prefix.lower().startswith("salt"):
        raise InboundConfigError(
            f"inbound.tag_prefix {prefix!r} starts with 'salt', where Salt's own events live; "
            "fix: choose another prefix, such as nats/inbound/"
        )

    durable = value.get("durable", "")
    stream = value.get("stream", "")
    queue_group = value.get("queue_group", "")
    for key, text in (("durable", durable), ("stream", stream), ("queue_group", queue_group)):
        if not isinstance(text, str) or (text and not _DURABLE_RE.match(text)):
            raise InboundConfigError(
                f"inbound.{key} {text!r} is invalid; fix: use letters, digits, '_' and '-'"
            )
    if durable and not stream:
        raise InboundConfigError(
            "inbound.durable needs inbound.stream; fix: name the stream that captures "
            "the inbound subjects"
        )

    max_bytes = value.get("max_bytes", 65536)
    rate = value.get("rate", 100.0)
    burst = value.get("burst", 200)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 2:
        raise InboundConfigError(f"inbound.max_bytes {max_bytes!r} is invalid; fix: e.g. 65536")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
        raise InboundConfigError(f"inbound.rate {rate!r} is invalid; fix: events per second > 0")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise InboundConfigError(f"inbound.burst {burst!r} is invalid; fix: an integer >= 1")

    return InboundSettings(
        subjects=tuple(subjects),
        tag_prefix=prefix,
        queue_group=queue_group,
        durable=durable,
        stream=stream,
        max_bytes=max_bytes,
        rate=float(rate),
        burst=burst,
    )


class TokenBucket:
    """Admit at most ``rate`` events per second on average, with bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()

    def admit(self) -> bool:
        """Take one token; return False when none is left."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def tag_for_subject(prefix: str, subject: str) -> str:
    """Return the bus tag for a NATS subject; raise :class:`InboundReject` if unsafe."""
    tokens = subject.split(".")
    for token in tokens:
        if not _SAFE_TOKEN_RE.match(token):
            raise InboundReject(
                REJECT_INVALID_SUBJECT, f"subject {subject[:200]!r} has an unsafe token"
            )
    return prefix + "/".join(tokens)


def decode_inbound_payload(payload: bytes, content_type: str | None) -> dict[str, Any]:
    """Decode a JSON object or a msgpack map; raise :class:`InboundReject` otherwise."""
    try:
        if content_type == "application/msgpack" or (
            content_type is None and payload[:1] not in (b"{", b" ", b"\n", b"\t", b"\r")
        ):
            data = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        else:
            data = json.loads(payload)
    except (ValueError, msgpack.UnpackException) as exc:
        raise InboundReject(REJECT_INVALID_PAYLOAD, f"payload is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise InboundReject(
            REJECT_INVALID_PAYLOAD, f"payload is a {type(data).__name__}, not an object"
        )
    return data


class InboundGate:
    """Check NATS messages and turn accepted ones into (tag, data) for the bus."""

    def __init__(self, settings: InboundSettings, master_id: str) -> None:
        self.settings = settings
        self.own_master = quote_id(master_id)
        self.bucket = TokenBucket(settings.rate, settings.burst)
        self.received = 0
        self.fired = 0
        self.rejected: Counter[str] = Counter()

    def admit(
        self, subject: str, payload: bytes, headers: Mapping[str, str] | None
    ) -> tuple[str, dict[str, Any]]:
        """Return the tag and data to fire; raise :class:`InboundReject` to refuse."""
        self.received += 1
        headers = headers or {}
        try:
            if headers.get(HEADER_MASTER) == self.own_master:
                raise InboundReject(REJECT_LOOP, "published by this master's own engine")
            if len(payload) > self.settings.max_bytes:
                raise InboundReject(
                    REJECT_TOO_LARGE,
                    f"payload of {len(payload)} bytes exceeds inbound.max_bytes "
                    f"({self.settings.max_bytes})",
                )
            tag = tag_for_subject(self.settings.tag_prefix, subject)
            data = decode_inbound_payload(payload, headers.get("Content-Type"))
            if not self.bucket.admit():
                raise InboundReject(
                    REJECT_RATE_LIMITED,
                    f"more than {self.settings.rate:g} events/s (burst {self.settings.burst})",
                )
        except InboundReject as exc:
            self.rejected[exc.reason] += 1
            raise
        event = {"data": data, "subject": subject}
        msg_id = headers.get("Nats-Msg-Id")
        if msg_id:
            event["msg_id"] = msg_id[:128]
        return tag, event

    def snapshot(self) -> dict[str, Any]:
        """Return the bridge's counters for status output."""
        return {
            "received": self.received,
            "fired": self.fired,
            "rejected": dict(self.rejected),
        }


class InboundBridge:
    """Subscribe on each new NATS client and fire admitted messages on the master bus."""

    def __init__(
        self,
        settings: InboundSettings,
        gate: InboundGate,
        firer: Any,
        instance: str,
        reject_log: Any,
    ) -> None:
        self.settings = settings
        self.gate = gate
        self.firer = firer
        self.instance = instance
        self.reject_log = reject_log
        self._client: Any = None

    async def attach(self, client: Any) -> None:
        """Subscribe on ``client`` unless it is the client already used."""
        if client is self._client:
            return
        subscriptions = []
        try:
            for subject in self.settings.subjects:
                if self.settings.durable:
                    js = client.jetstream()
                    subscription = await js.subscribe(
                        subject,
                        durable=self.settings.durable,
                        stream=self.settings.stream,
                        queue=self.settings.queue_group or None,
                        cb=self._handle,
                        manual_ack=True,
                    )
                else:
                    subscription = await client.subscribe(
                        subject, queue=self.settings.queue_group, cb=self._handle
                    )
                subscriptions.append(subscription)
        except BaseException:
            # Leave no half-made set of subscriptions behind; the caller retries.
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
            raise
        self._client = client
        log.info(
            "salt-nats %s: inbound bridge subscribed to %s; events are fired under %s",
            self.instance,
            ", ".join(self.settings.subjects),
            self.settings.tag_prefix,
        )

    async def _handle(self, msg: Any) -> None:
        durable = bool(self.settings.durable)
        try:
            tag, data = self.gate.admit(msg.subject, msg.data, msg.headers)
        except InboundReject as exc:
            self.reject_log.note(
                f"inbound_{exc.reason}",
                "salt-nats %s: rejected an inbound message on %.200s (%s): %s",
                self.instance,
                msg.subject,
                exc.reason,
                exc,
            )
            if durable:
                await msg.term()  # a rejected message would fail the same way again
            return

        fired = await self.firer.fire(data, tag)
        if fired:
            self.gate.fired += 1
            if durable:
                await msg.ack()
            return
        self.reject_log.note(
            "inbound_fire_failed",
            "salt-nats %s: the master bus did not take the inbound event %s",
            self.instance,
            tag,
        )
        if durable:
            await msg.nak(delay=1.0)
