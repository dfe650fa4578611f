"""How the forwarder reads a JetStream publish acknowledgement."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from salt_nats.forwarder import _ack_error


def ack(data: bytes, headers: dict[str, str] | None = None) -> SimpleNamespace:
    return SimpleNamespace(data=data, headers=headers)


@pytest.mark.parametrize(
    "data",
    [
        b'{"stream":"SALT_EVENTS","seq":1}',
        b'{"stream":"SALT_EVENTS","seq":7,"duplicate":true}',
        b'{"stream":"SALT_EVENTS","domain":"hub","seq":2}',
        b'{"seq":3,"stream":"SALT_EVENTS"}',
    ],
)
def test_success(data: bytes) -> None:
    assert _ack_error(ack(data)) is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (ack(b"", {"Status": "503"}), "no stream captures the subject (no responders)"),
        (
            ack(b"", {"Status": "408", "Description": "Request Timeout"}),
            "status 408 Request Timeout",
        ),
        (
            ack(b'{"error":{"code":503,"description":"maximum messages exceeded"}}'),
            "{'code': 503, 'description': 'maximum messages exceeded'}",
        ),
        (
            ack(b'{"stream":"S","error":{"code":400,"description":"wrong last sequence"}}'),
            "{'code': 400, 'description': 'wrong last sequence'}",
        ),
        (ack(b"not json"), "invalid acknowledgement b'not json'"),
        (ack(b"[1]"), "invalid acknowledgement b'[1]'"),
        (ack(b'{"seq":1}'), "invalid acknowledgement b'{\"seq\":1}'"),
    ],
)
def test_failure(message: SimpleNamespace, expected: str) -> None:
    assert _ack_error(message) == expected
