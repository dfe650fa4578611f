"""The nats engine in a real salt-master, with a real minion and nats-server."""

from __future__ import annotations

import ast
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import salt.utils.event

from salt_nats.codec import decode_payload, unquote_id
from salt_nats.subjects import tag_from_message, tag_to_subject
from tests.support.bus import fire_events
from tests.support.collector import NatsCollector, ReceivedMessage
from tests.support.jetstream import create_stream, read_stream

pytestmark = pytest.mark.integration

MINION_ID = "web01.example.com"
ENCODED_MINION = "web01%2Eexample%2Ecom"


def decoded(message: ReceivedMessage) -> tuple[str, Any]:
    """Return the (tag, data) of a forwarded event."""
    return decode_payload(message.data, message.headers.get("Content-Type"))


def is_return_of(fun: str) -> Any:
    def predicate(message: ReceivedMessage) -> bool:
        if not message.subject.endswith(f".ret.{ENCODED_MINION}"):
            return False
        return decoded(message)[1].get("fun") == fun

    return predicate


@pytest.fixture(scope="module")
def engine_master(make_master: Any, nats_server_module: Any) -> Any:
    # Salt trims bus events above max_event_size (1 MiB by default) itself; a larger
    # limit lets a 2 MB return reach the engine whole, so its size policy applies.
    return make_master(
        engine_config={"servers": [nats_server_module.url], "name": "main"},
        extra_config={"max_event_size": 8 * 1024 * 1024},
        master_id="nats-master",
    )


@pytest.fixture(scope="module")
def engine_minion(make_minion: Any, engine_master: Any) -> Any:
    # The minion hands its returns to its main process over its own event bus,
    # which trims them at the same limit.
    return make_minion(engine_master, MINION_ID, {"max_event_size": 8 * 1024 * 1024})


@pytest.fixture
def collector(nats_server_module: Any, engine_minion: Any) -> Any:
    with NatsCollector(nats_server_module.url, "salt.events.>") as events:
        yield events


def test_ping_return_subject_and_headers(engine_master: Any, collector: Any) -> None:
    result = engine_master.salt_cli(timeout=30).run("test.ping", minion_tgt=MINION_ID)
    assert result.returncode == 0, result

    (message,) = collector.wait_for(is_return_of("test.ping"), timeout=30)
    tag, data = decoded(message)
    jid = data["jid"]

    assert message.subject == f"salt.events.salt.job.{jid}.ret.{ENCODED_MINION}"
    assert tag == f"salt/job/{jid}/ret/{MINION_ID}"
    assert tag_from_message(message.subject, message.headers) == tag
    assert data["return"] is True
    assert data["id"] == MINION_ID
    assert message.headers["Salt-Tag"] == tag
    assert message.headers["Salt-Master"] == "nats-master"
    assert unquote_id(message.headers["Salt-Origin"]) == MINION_ID
    assert message.headers["Content-Type"] == "application/json"
    assert len(message.headers["Nats-Msg-Id"]) >= 16


def test_ping_job_events_and_default_excludes(engine_master: Any, collector: Any) -> None:
    engine_master.salt_cli(timeout=30).run("test.ping", minion_tgt=MINION_ID)
    (ret,) = collector.wait_for(is_return_of("test.ping"), timeout=30)
    jid = decoded(ret)[1]["jid"]

    new_subject = f"salt.events.salt.job.{jid}.new"
    collector.wait_for(lambda m: m.subject == new_subject, timeout=10)
    subjects = {m.subject for m in collector.messages}

    assert f"salt.events.salt.job.{jid}.publish" not in subjects


def test_state_single_name_with_space(engine_master: Any, collector: Any) -> None:
    result = engine_master.salt_cli(timeout=60).run(
        "state.single", "test.succeed_with_changes", "name=a b", minion_tgt=MINION_ID
    )
    assert result.returncode == 0, result

    (message,) = collector.wait_for(is_return_of("state.single"), timeout=60)
    _, data = decoded(message)
    (state_id,) = data["return"]
    state = data["return"][state_id]

    assert state_id == "test_|-a b_|-a b_|-succeed_with_changes"
    assert state["result"] is True
    assert state["changes"]
    assert data["success"] is True


def test_event_send_tag_with_dots_and_spaces(engine_minion: Any, collector: Any) -> None:
    tag = "myco/deploy/v1.2 done"
    result = engine_minion.salt_call_cli(timeout=30).run("event.send", tag, version="v1.2")
    assert result.returncode == 0, result

    (message,) = collector.wait_for(lambda m: m.headers.get("Salt-Tag") == tag, timeout=30)
    got_tag, data = decoded(message)

    assert message.subject == "salt.events.myco.deploy.v1%2E2%20done"
    assert message.subject == tag_to_subject(tag)
    assert got_tag == tag
    assert data["data"]["version"] == "v1.2"
    assert unquote_id(message.headers["Salt-Origin"]) == MINION_ID


def test_two_mb_return_is_truncated(
    engine_master: Any, collector: Any, nats_server_module: Any
) -> None:
    command = "python3 -c \"print('x' * 2000000)\""
    result = engine_master.salt_cli(timeout=120).run("cmd.run", command, minion_tgt=MINION_ID)
    assert result.returncode == 0

    (big,) = collector.wait_for(is_return_of("cmd.run"), timeout=60)
    _, data = decoded(big)
    max_payload = 1024 * 1024
    size = len(big.data) + sum(len(k) + len(v) + 4 for k, v in big.headers.items()) + 12

    assert size <= max_payload
    assert big.headers["Salt-Nats-Truncated"] == "1"
    assert data["return"].startswith("[salt-nats: value of about")
    assert data["id"] == MINION_ID
    assert data["fun"] == "cmd.run"

    # The connection survived: the next job is forwarded as usual.
    engine_master.salt_cli(timeout=30).run("test.ping", minion_tgt=MINION_ID)
    collector.wait_for(is_return_of("test.ping"), timeout=30)


# --- NATS outages ---------------------------------------------------------------------


def engine_stop_line(daemon_log: Any, master: Any) -> dict[str, Any]:
    """Parse the counters the engine logs when it stops."""
    (line,) = daemon_log(master).wait_for(r"salt-nats \S+: stopped; received", timeout=15)
    match = re.search(
        r"received (\d+), published (\d+), filtered (\d+), dropped (\{.*\}|0), "
        r"acknowledged (\d+), retried (\d+), duplicates (\d+)",
        line,
    )
    assert match, line
    received, published, filtered, dropped, acknowledged, retried, duplicates = match.groups()
    return {
        "received": int(received),
        "published": int(published),
        "filtered": int(filtered),
        "dropped": {} if dropped == "0" else ast.literal_eval(dropped),
        "acknowledged": int(acknowledged),
        "retried": int(retried),
        "duplicates": int(duplicates),
    }


def test_outage_buffers_then_delivers(
    make_master: Any, make_nats_server: Any, daemon_log: Any
) -> None:
    nats_server = make_nats_server(name="outage", jetstream=True)
    create_stream(nats_server.url, "OUTAGE", ["salt.events.test.outage.>"])
    nats_server.stop()

    # The master starts while NATS is down; the engine must keep reading.
    master = make_master(
        engine_config={
            "servers": [nats_server.url],
            "include": ["test/outage/*"],
            "buffer_max_events": 30,
            "reconnect_time_wait": 0.2,
        }
    )
    opts = master.config
    fire_events(opts, "test/outage", 5, start=0)  # before NATS ever came up
    time.sleep(1)
    nats_server.start()
    time.sleep(2)
    fire_events(opts, "test/outage", 10, start=5)  # while connected
    time.sleep(1)

    nats_server.stop()
    # 50 events in 10 s while NATS is down; the buffer keeps the newest 30.
    fire_events(opts, "test/outage", 50, start=15, rate=5)
    nats_server.start()
    time.sleep(2)
    fire_events(opts, "test/outage", 10, start=65)  # after NATS is back
    time.sleep(2)
    master.terminate()

    numbers = []
    for message in read_stream(nats_server.url, "OUTAGE"):
        _, data = decode_payload(message.data)
        numbers.append(data["n"])
    expected = list(range(0, 15)) + list(range(35, 65)) + list(range(65, 75))

    assert numbers == expected
    counters = engine_stop_line(daemon_log, master)
    assert counters["received"] - counters["filtered"] == 75
    assert counters["published"] == 55
    assert counters["dropped"] == {"buffer_full": 20}


def wait_for_received(master: Any, instance: str, count: int, timeout: float = 60) -> None:
    """Wait until the engine's status file shows ``count`` events read and not filtered."""
    path = Path(master.config["cachedir"]) / "salt-nats" / f"{instance}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            report = json.loads(path.read_text())
            if report["received"] - report["filtered"] >= count:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the engine did not read {count} events within {timeout} s")


def test_sigterm_flushes_buffer(make_master: Any, make_nats_server: Any, daemon_log: Any) -> None:
    nats_server = make_nats_server(name="flush", jetstream=True)
    create_stream(nats_server.url, "FLUSH", ["salt.events.test.flush.>"])
    master = make_master(
        engine_config={
            "servers": [nats_server.url],
            "name": "flush",
            "include": ["test/flush/*"],
            "heartbeat_interval": 1,
        }
    )
    fire_events(master.config, "test/flush", 2000, payload={"blob": "y" * 2000})
    # Stop as soon as the engine has read every event: what it has not published and
    # flushed yet must go out during shutdown.
    wait_for_received(master, "flush", 2000)
    master.terminate()

    counters = engine_stop_line(daemon_log, master)
    stored = read_stream(nats_server.url, "FLUSH")

    assert counters["received"] - counters["filtered"] == 2000
    assert counters["dropped"] == {}
    assert counters["published"] == 2000
    assert len(stored) == 2000


def test_large_events_keep_their_order(make_master: Any, make_nats_server: Any) -> None:
    # With the smallest pending_size, 64 KiB, every 40 KB event is more than the bus
    # reader may publish itself, so it hands the event to the publisher task. The small
    # events in between are published by whichever of the two runs at the time.
    nats_server = make_nats_server(name="pending", jetstream=True)
    create_stream(nats_server.url, "PENDING", ["salt.events.test.pending.>"])
    master = make_master(
        engine_config={
            "servers": [nats_server.url],
            "name": "pending",
            "include": ["test/pending/*"],
            "pending_size": "64KiB",
        }
    )
    count = 600
    with salt.utils.event.get_master_event(
        dict(master.config), master.config["sock_dir"], listen=False
    ) as bus:
        for n in range(count):
            data: dict[str, Any] = {"n": n}
            if n % 2 == 0:
                data["blob"] = "z" * 40_000
            assert bus.fire_event(data, f"test/pending/{n}")

    deadline = time.monotonic() + 60
    stored: list[Any] = []
    while time.monotonic() < deadline:
        stored = read_stream(nats_server.url, "PENDING")
        if len(stored) >= count:
            break
        time.sleep(0.5)
    numbers = [decode_payload(message.data)[1]["n"] for message in stored]

    assert len(numbers) == count
    assert numbers == list(range(count))


# --- invalid configuration -----------------------------------------------------------


def test_invalid_config_logged_once(make_master: Any, daemon_log: Any) -> None:
    master = make_master(engine_config={"servers": ["nats://127.0.0.1:1"], "sever": "x"})
    log = daemon_log(master)
    log.wait_for(r"salt-nats engine \S+ not started", timeout=30)
    # The master restarts an engine about 10 s after start() returns; wait past that.
    time.sleep(12)
    lines = log.lines_matching(r"salt-nats engine \S+ not started")

    assert len(lines) == 1
    assert "invalid option 'sever' = 'x'" in lines[0]
    assert "did you mean 'servers'?" in lines[0]
    assert "[ERROR" in lines[0]
