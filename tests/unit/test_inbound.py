"""The checks of the NATS -> bus bridge: tags, payloads, sizes, rates and loops."""

from __future__ import annotations

import json

import msgpack
import pytest

from salt_nats import inbound
from salt_nats.codec import quote_id
from salt_nats.inbound import (
    InboundConfigError,
    InboundGate,
    InboundReject,
    TokenBucket,
    parse_inbound_settings,
    tag_for_subject,
)


def gate(**options: object) -> InboundGate:
    settings = parse_inbound_settings({"subjects": ["salt.inbound.>"], **options})
    return InboundGate(settings, "master01")


def reason_of(call: object) -> str:
    with pytest.raises(InboundReject) as caught:
        call()  # type: ignore[operator]
    return caught.value.reason


def test_defaults() -> None:
    settings = parse_inbound_settings({"subjects": "a.b"})

    assert settings.subjects == ("a.b",)
    assert settings.tag_prefix == "nats/inbound/"
    assert settings.rate == 100.0


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"subjects": []},
        {"subjects": ["a..b"]},
        {"subjects": ["a b"]},
        {"subjects": ["a"], "tag_prefix": "salt/"},
        {"subjects": ["a"], "tag_prefix": "SALT/x/"},
        {"subjects": ["a"], "tag_prefix": "salt-nats/"},
        {"subjects": ["a"], "tag_prefix": "nats/inbound"},
        {"subjects": ["a"], "tag_prefix": "nats/../salt/"},
        {"subjects": ["a"], "tag_prefix": "/nats/"},
        {"subjects": ["a"], "durable": "d"},
        {"subjects": ["a"], "durable": "d x", "stream": "S"},
        {"subjects": ["a"], "max_bytes": 0},
        {"subjects": ["a"], "rate": 0},
        {"subjects": ["a"], "burst": 0},
        {"subjects": ["a"], "unknown": 1},
    ],
)
def test_invalid_settings_rejected(options: dict) -> None:
    with pytest.raises(InboundConfigError):
        parse_inbound_settings(options)


def test_not_a_mapping_rejected() -> None:
    with pytest.raises(InboundConfigError, match="fix"):
        parse_inbound_settings(["a"])


def test_tag_keeps_prefix() -> None:
    assert tag_for_subject("nats/inbound/", "deploy.web.done") == "nats/inbound/deploy/web/done"


@pytest.mark.parametrize(
    "subject",
    ["a.%2F.b", "a./.b", "a.\u00e9", "a.b\r\nc", "x" * 200, "a.b c", "a..b", "a.b/../salt"],
)
def test_unsafe_subject_rejected(subject: str) -> None:
    assert reason_of(lambda: tag_for_subject("nats/inbound/", subject)) == "invalid_subject"


def test_json_object_accepted() -> None:
    tag, data = gate().admit("salt.inbound.deploy", json.dumps({"v": 1}).encode(), {})

    assert tag == "nats/inbound/salt/inbound/deploy"
    assert data == {"data": {"v": 1}, "subject": "salt.inbound.deploy"}


def test_msgpack_map_accepted() -> None:
    payload = msgpack.packb({"v": 2})
    _, data = gate().admit("a.b", payload, {"Content-Type": "application/msgpack"})

    assert data["data"] == {"v": 2}


def test_msg_id_kept() -> None:
    _, data = gate().admit("a.b", b"{}", {"Nats-Msg-Id": "abc"})

    assert data["msg_id"] == "abc"


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b'"text"', b"\xc1", b""])
def test_invalid_payload_rejected(payload: bytes) -> None:
    g = gate()

    assert reason_of(lambda: g.admit("a.b", payload, {})) == "invalid_payload"
    assert g.rejected["invalid_payload"] == 1


def test_oversized_rejected() -> None:
    g = gate(max_bytes=100)
    payload = json.dumps({"x": "y" * 200}).encode()

    assert reason_of(lambda: g.admit("a.b", payload, {})) == "too_large"


def test_own_master_rejected_as_loop() -> None:
    g = gate()
    headers = {"Salt-Master": quote_id("master01")}

    assert reason_of(lambda: g.admit("a.b", b"{}", headers)) == "loop"


def test_other_master_accepted() -> None:
    tag, _ = gate().admit("a.b", b"{}", {"Salt-Master": "master02"})

    assert tag == "nats/inbound/a/b"


def test_flood_rate_limited() -> None:
    g = gate(rate=1, burst=5)
    accepted = 0
    for _ in range(50):
        try:
            g.admit("a.b", b"{}", {})
            accepted += 1
        except InboundReject:
            pass

    assert accepted == 5
    assert g.rejected["rate_limited"] == 45
    assert g.received == 50


def test_bucket_refills(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(inbound.time, "monotonic", lambda: now[0])
    bucket = TokenBucket(rate=10, burst=1)

    assert bucket.admit() is True
    assert bucket.admit() is False
    now[0] += 0.2
    assert bucket.admit() is True
