"""Unit tests of the returner's option parsing, message building, packing and event buffer."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from salt_nats import codec
from salt_nats.codec import EncodeError, SaltConstant, decode_payload
from salt_nats.config import ConfigError
from salt_nats.returner import (
    EventReturnQueue,
    build_return_message,
    options_reference,
    pack_salt_data,
    parse_returner_settings,
    return_msg_id,
    warn_unknown_options,
)

RETURNER_PAGE = Path(__file__).resolve().parents[2] / "docs" / "returner.md"
START_MARKER = "<!-- returner-options-table:start -->"
END_MARKER = "<!-- returner-options-table:end -->"

RET = {
    "jid": "20240101120000123456",
    "id": "web01.example.com",
    "fun": "test.ping",
    "fun_args": [],
    "return": True,
    "retcode": 0,
    "success": True,
}


def settings_for(**options: Any) -> Any:
    settings, unknown = parse_returner_settings(options)
    assert unknown == []
    return settings


# --- options ---------------------------------------------------------------------------


def test_parse_defaults() -> None:
    settings = settings_for()

    assert settings.connection.servers == ("nats://127.0.0.1:4222",)
    assert settings.connection.subject_prefix == "salt.returns"
    assert settings.connection.format == "json"
    assert settings.timeout == 5.0
    assert settings.event_subject_prefix == "salt.events"
    assert settings.kv_jobs_bucket == "salt_jobs"
    assert settings.kv_returns_bucket == "salt_job_returns"
    assert settings.kv_replicas == 1
    assert settings.kv_storage == "file"


def test_parse_shared_and_own_options() -> None:
    settings = settings_for(
        servers="nats://a:4222, nats://b:4222",
        format="MSGPACK",
        subject_prefix="ops.returns",
        timeout="2.5",
        kv_jobs_bucket="jobs-1",
        kv_replicas="3",
        buffer_max_bytes="1MiB",
    )

    assert settings.connection.servers == ("nats://a:4222", "nats://b:4222")
    assert settings.connection.format == "msgpack"
    assert settings.connection.subject_prefix == "ops.returns"
    assert settings.connection.buffer_max_bytes == 1024**2
    assert settings.timeout == 2.5
    assert settings.kv_jobs_bucket == "jobs-1"
    assert settings.kv_replicas == 3


@pytest.mark.parametrize(
    ("key", "value", "fix"),
    [
        ("format", "yaml", "set format to one of: json, msgpack"),
        ("timeout", 0, "set timeout to a value between 0.1 and 300.0 seconds"),
        ("timeout", "soon", "set timeout to e.g. 2.5"),
        ("kv_jobs_bucket", "salt.jobs", "choose a name such as salt_jobs"),
        ("kv_replicas", 6, "set kv_replicas to a value between 1 and 5"),
        ("kv_storage", "disk", "set kv_storage to one of: file, memory"),
        ("event_subject_prefix", "a..b", "use dot-separated tokens such as salt.events"),
        ("servers", "http://host", "write each server as nats://host:4222"),
    ],
)
def test_parse_invalid_value_names_key_value_and_fix(key: str, value: Any, fix: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_returner_settings({key: value})

    assert raised.value.key == key
    assert f"invalid option {key!r}" in str(raised.value)
    assert repr(raised.value.value) in str(raised.value) or key == "servers"
    assert fix in str(raised.value)


def test_parse_same_bucket_twice_rejected() -> None:
    with pytest.raises(ConfigError, match="give the two buckets different names"):
        parse_returner_settings({"kv_jobs_bucket": "jobs", "kv_returns_bucket": "jobs"})


def test_parse_returns_unknown_option_names() -> None:
    settings, unknown = parse_returner_settings({"servrs": "x", "mode": "jetstream", "timeout": 1})

    assert unknown == ["mode", "servrs"]
    assert settings.timeout == 1.0


def test_warn_unknown_options_once_with_hint(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="salt_nats.returner"):
        warn_unknown_options(["kv_replica"])
        warn_unknown_options(["kv_replica"])

    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "salt-nats returner: ignoring unknown option 'kv_replica'; did you mean 'kv_replicas'?"
    ]


def test_options_table_matches_docs() -> None:
    lines = RETURNER_PAGE.read_text(encoding="utf-8").splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == START_MARKER]
    ends = [i for i, line in enumerate(lines) if line.strip() == END_MARKER]

    assert len(starts) == 1
    assert len(ends) == 1
    table = "".join(lines[starts[0] + 1 : ends[0]])
    assert table == options_reference(), (
        "the options table in docs/returner.md differs from "
        "salt_nats.returner.options_reference(); paste its output between the markers"
    )


# --- return messages ---------------------------------------------------------------------


def test_return_message_subject_payload_and_headers() -> None:
    message = build_return_message(settings_for(), RET, None, 1024 * 1024)
    tag, data = decode_payload(message.payload, message.headers["Content-Type"])

    assert message.subject == "salt.returns.web01%2Eexample%2Ecom.test%2Eping.20240101120000123456"
    assert tag == "salt/job/20240101120000123456/ret/web01.example.com"
    assert data == RET
    assert message.headers["Salt-Tag"] == tag
    assert message.headers["Salt-Origin"] == "web01.example.com"
    assert message.headers["Content-Type"] == "application/json"
    assert message.headers["Nats-Msg-Id"] == return_msg_id(RET["jid"], RET["id"])
    assert "Salt-Master" not in message.headers


def test_return_message_on_master_names_master() -> None:
    message = build_return_message(settings_for(format="msgpack"), RET, "salt master", 1 << 20)

    assert message.headers["Salt-Master"] == "salt%20master"
    assert message.headers["Content-Type"] == "application/msgpack"
    assert decode_payload(message.payload, "application/msgpack")[1] == RET


def test_return_message_without_ret_kwargs() -> None:
    ret = {**RET, "ret_kwargs": {"password": "secret"}}
    message = build_return_message(settings_for(), ret, None, 1 << 20)

    assert "ret_kwargs" not in decode_payload(message.payload)[1]
    assert b"secret" not in message.payload


def test_return_subject_joins_compound_functions() -> None:
    ret = {**RET, "fun": ["test.ping", "test.echo"]}
    message = build_return_message(settings_for(), ret, None, 1 << 20)

    assert message.subject.split(".")[3] == "test%2Eping,test%2Eecho"


def test_return_msg_id_stable() -> None:
    first = return_msg_id("20240101120000123456", "web01")

    assert first == return_msg_id("20240101120000123456", "web01")
    assert first != return_msg_id("20240101120000123456", "web02")
    assert len(first) == 32


def test_oversize_return_truncated_to_max_payload() -> None:
    ret = {**RET, "return": "x" * 20_000}
    message = build_return_message(settings_for(), ret, None, 4096)

    assert message.size <= 4096
    assert message.truncated_values == 1
    assert message.headers["Salt-Nats-Truncated"] == "1"
    assert decode_payload(message.payload)[1]["jid"] == RET["jid"]


def test_oversize_return_with_drop_policy_raises() -> None:
    ret = {**RET, "return": "x" * 20_000}

    with pytest.raises(EncodeError, match="exceeds max_payload"):
        build_return_message(settings_for(oversize="drop"), ret, None, 4096)


def test_return_subject_over_limit_raises() -> None:
    ret = {**RET, "id": "m" * 200}

    with pytest.raises(ValueError, match="max_subject_bytes"):
        build_return_message(settings_for(max_subject_bytes=64), ret, None, 1 << 20)


# --- packing ---------------------------------------------------------------------------


class ReadOnlyMapping(Mapping):
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class _Constant:
    """Stands in for Salt's constant type, which the packer recognises by name."""

    def __init__(self, name: str, value: Any = None) -> None:
        self.name = name
        self.value = value


def test_pack_salt_data_converts_salt_types() -> None:
    data = {
        "mapping": ReadOnlyMapping({"a": 1}),
        "set": frozenset(["only"]),
        "date": datetime.date(2024, 5, 6),
        "big": 2**70,
        "constant": _Constant("NOT_SET"),
        "bytes": bytearray(b"\x00\xff"),
    }

    unpacked = codec.unpack_data(pack_salt_data(data))

    assert unpacked == {
        "mapping": {"a": 1},
        "set": ["only"],
        "date": datetime.datetime(2024, 5, 6),
        "big": str(2**70),
        "constant": SaltConstant("NOT_SET", None),
        "bytes": b"\x00\xff",
    }


def test_pack_salt_data_rejects_unknown_types() -> None:
    with pytest.raises(TypeError):
        pack_salt_data({"value": object()})


# --- event_return buffer ---------------------------------------------------------------


class FakeClient:
    """Records publishes; ``fail_flushes`` makes that many flushes raise."""

    def __init__(self, fail_flushes: int = 0) -> None:
        self.is_connected = True
        self.max_payload = 1024 * 1024
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self.confirmed: list[tuple[str, bytes, dict[str, str]]] = []
        self.fail_flushes = fail_flushes

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        self.published.append((subject, payload, headers))

    async def flush(self, timeout: float) -> None:
        if self.fail_flushes:
            self.fail_flushes -= 1
            raise TimeoutError("flush timed out")
        self.confirmed = list(self.published)


class FakeShared:
    def __init__(self, client: FakeClient | None) -> None:
        self.client = client
        self.callbacks: list[Any] = []

    def connected_client(self) -> FakeClient | None:
        return self.client

    def add_ready_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)


def events(start: int, count: int) -> list[dict[str, Any]]:
    return [{"tag": f"test/er/{n}", "data": {"n": n}} for n in range(start, start + count)]


def queue_for(**options: Any) -> EventReturnQueue:
    queue = EventReturnQueue()
    queue.configure(settings_for(**options), "master-1")
    return queue


def drain(queue: EventReturnQueue, shared: FakeShared) -> None:
    async def run() -> None:
        queue.bind(shared)
        await queue.request_drain()

    asyncio.run(run())


def numbers(messages: list[tuple[str, bytes, dict[str, str]]]) -> list[int]:
    return [decode_payload(payload)[1]["n"] for _, payload, _ in messages]


def test_event_queue_publishes_in_order() -> None:
    queue = queue_for()
    queue.add(events(0, 5))
    client = FakeClient()

    drain(queue, FakeShared(client))

    assert numbers(client.confirmed) == [0, 1, 2, 3, 4]
    assert client.confirmed[0][0] == "salt.events.test.er.0"
    assert client.confirmed[0][2]["Salt-Master"] == "master-1"
    assert len(queue) == 0
    assert queue.published == 5


def test_event_queue_keeps_events_while_disconnected() -> None:
    queue = queue_for()
    queue.add(events(0, 3))

    drain(queue, FakeShared(None))

    assert len(queue) == 3
    assert queue.published == 0


def test_event_queue_retries_failed_flush() -> None:
    queue = queue_for()
    queue.add(events(0, 3))
    client = FakeClient(fail_flushes=1)
    shared = FakeShared(client)

    drain(queue, shared)
    first_ids = [headers["Nats-Msg-Id"] for _, _, headers in client.published]
    assert len(queue) == 3

    client.published.clear()
    queue.add(events(3, 1))
    drain(queue, shared)

    assert numbers(client.confirmed) == [0, 1, 2, 3]
    assert [headers["Nats-Msg-Id"] for _, _, headers in client.confirmed][:3] == first_ids
    assert len(queue) == 0


def test_event_queue_full_drops_oldest_and_counts() -> None:
    queue = queue_for(buffer_max_events=3)
    queue.add(events(0, 5))
    client = FakeClient()

    drain(queue, FakeShared(client))

    assert numbers(client.confirmed) == [2, 3, 4]
    assert queue.dropped["buffer_full"] == 2


def test_event_queue_full_drops_newest_when_configured() -> None:
    queue = queue_for(buffer_max_events=3, buffer_full="drop_newest")
    queue.add(events(0, 5))
    client = FakeClient()

    drain(queue, FakeShared(client))

    assert numbers(client.confirmed) == [0, 1, 2]
    assert queue.dropped["buffer_full"] == 2


def test_event_queue_drops_invalid_events_only() -> None:
    queue = queue_for()
    queue.add([{"data": {}}, {"tag": "test/er/bad", "data": {"v": object()}}, *events(0, 1)])
    client = FakeClient()

    drain(queue, FakeShared(client))

    assert numbers(client.confirmed) == [0]
    assert queue.dropped["invalid_event"] == 1
    assert queue.dropped["encode_failed"] == 1


def test_event_queue_drops_oversize_event_with_drop_policy() -> None:
    queue = queue_for(oversize="drop")
    queue.add([{"tag": "test/er/big", "data": {"n": -1, "blob": "x" * 5000}}, *events(0, 1)])
    client = FakeClient()
    client.max_payload = 4096

    drain(queue, FakeShared(client))

    assert numbers(client.confirmed) == [0]
    assert queue.dropped["oversize"] == 1


def test_event_queue_reconfigure_keeps_buffered_events() -> None:
    queue = queue_for()
    queue.add(events(0, 4))
    queue.configure(settings_for(buffer_max_events=2), "master-1")

    assert len(queue) == 2
    assert queue.dropped["buffer_full"] == 2


def test_event_queue_drains_on_reconnect_callback() -> None:
    queue = queue_for()
    queue.add(events(0, 2))
    client = FakeClient()
    shared = FakeShared(client)

    async def run() -> None:
        queue.bind(shared)
        (callback,) = shared.callbacks
        callback()
        await asyncio.sleep(0)
        await queue.request_drain()

    asyncio.run(run())

    assert numbers(client.confirmed) == [0, 1]
