"""Smoke tests for the integration fixtures: nats-server, the collector, and Salt daemons."""

from __future__ import annotations

import asyncio
import contextlib
import time

import nats
import pytest

from tests.support.collector import NatsCollector, publish
from tests.support.nats_server import NatsCluster, NatsServer, NatsServerError

pytestmark = pytest.mark.integration


def test_nats_server_listens_on_loopback(nats_server):
    varz = nats_server.varz()

    assert nats_server.is_running
    assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    assert varz["host"] == "127.0.0.1"
    assert varz["port"] == nats_server.port
    assert varz["version"].startswith("2.15.")
    assert varz["jetstream"]["config"]["store_dir"].startswith(str(nats_server.work_dir))


def test_nats_server_options_reach_config(make_nats_server):
    server = make_nats_server(max_payload=4096, jetstream=False, extra_config="max_pending: 1MB")
    varz = server.varz()

    assert varz["max_payload"] == 4096
    assert varz["max_pending"] == 1024 * 1024
    assert "jetstream" not in server.config_file.read_text()


def test_nats_server_bad_config_shows_log(tmp_path):
    server = NatsServer(tmp_path, extra_config="this is not valid {")

    with pytest.raises(NatsServerError, match="exited with code") as error:
        server.start()

    assert str(server.log_file) in str(error.value)
    assert not server.is_running


def test_collector_receives_headers(nats_server):
    with NatsCollector(nats_server.url, "salt.events.>") as collector:
        publish(
            nats_server.url,
            "salt.events.myco.deploy",
            b'{"tag": "myco/deploy"}',
            headers={"Salt-Tag": "myco/deploy"},
        )
        publish(nats_server.url, "other.subject", b"ignored")

        (message,) = collector.wait_for(lambda m: m.subject == "salt.events.myco.deploy")

    assert message.data == b'{"tag": "myco/deploy"}'
    assert message.json() == {"tag": "myco/deploy"}
    assert message.headers["Salt-Tag"] == "myco/deploy"
    assert message.received_at <= time.time()
    assert all(m.subject.startswith("salt.events.") for m in collector.messages)


def test_collector_wait_for_count_times_out(nats_server):
    with NatsCollector(nats_server.url, "salt.events.>") as collector:
        publish(nats_server.url, "salt.events.one", b"1")

        with pytest.raises(TimeoutError, match="1 matched"):
            collector.wait_for_count(2, timeout=0.5)


def test_collector_survives_restart(nats_server):
    port_before = nats_server.port

    with NatsCollector(nats_server.url, "salt.events.>") as collector:
        publish(nats_server.url, "salt.events.before", b"before")
        collector.wait_for(lambda m: m.subject == "salt.events.before")

        nats_server.restart()
        collector.wait_until_connected(timeout=10)
        publish(nats_server.url, "salt.events.after", b"after")
        (message,) = collector.wait_for(lambda m: m.subject == "salt.events.after")

    assert nats_server.port == port_before
    assert message.data == b"after"
    assert collector.reconnect_count >= 1


def test_collector_sees_burst_without_drops(nats_server):
    count = 5000

    async def publish_burst():
        client = await nats.connect(nats_server.url)
        for index in range(count):
            await client.publish(f"salt.events.burst.{index}", b"x" * 512)
        await client.flush()
        await client.close()

    with NatsCollector(nats_server.url, "salt.events.>") as collector:
        asyncio.run(publish_burst())
        messages = collector.wait_for_count(count, timeout=20)

    assert len(messages) == count
    assert not collector.errors


def test_nats_server_pause_and_resume(nats_server):
    nats_server.pause()
    assert nats_server.is_paused
    assert nats_server.is_running

    nats_server.resume()
    nats_server.wait_until_ready(timeout=5)
    assert not nats_server.is_paused


def test_nats_cluster_routes_messages(tmp_path):
    with NatsCluster(tmp_path, size=3) as cluster:
        meta = cluster.nodes[0].monitor("jsz")["meta_cluster"]
        first_url, _, last_url = cluster.urls

        with NatsCollector(first_url, "salt.events.>") as collector:
            # Interest in the subject reaches the other nodes over the routes shortly after
            # the subscription, and core NATS drops what is published before that, so
            # publish until one message arrives, at most 50 times.
            for _attempt in range(50):
                publish(last_url, "salt.events.cluster", b"routed")
                with contextlib.suppress(TimeoutError):
                    messages = collector.wait_for(timeout=0.2)
                    break
            else:
                pytest.fail("no message from the last node reached the first node in 50 attempts")

    assert meta["cluster_size"] == 3
    assert meta["leader"]
    assert messages[0].subject == "salt.events.cluster"
    assert messages[0].data == b"routed"
    assert all(not node.is_running for node in cluster.nodes)


def test_make_master_writes_engine_config(make_master, nats_server):
    engine_config = {"servers": [nats_server.url], "subject_prefix": "salt.events"}

    master = make_master(engine_config, {"log_level_logfile": "info"}, start=False)

    # salt-factories returns the loaded config with immutable types, which do not
    # compare equal to plain dicts and lists, so each value is checked on its own.
    nats_entry = master.config["engines"][0]["nats"]
    assert not master.is_running()
    assert list(nats_entry["servers"]) == [nats_server.url]
    assert nats_entry["subject_prefix"] == "salt.events"
    assert "pytest" in master.config["engines"]
    assert master.config["log_level_logfile"] == "info"
    assert master.config["open_mode"] is True
    assert master.config["interface"] == "127.0.0.1"


def test_master_and_minion_ping(salt_minion, salt_cli):
    result = salt_cli.run("test.ping", minion_tgt=salt_minion.id)

    assert salt_minion.id == "web01.example.com"
    assert result.returncode == 0, result
    assert result.data is True


def test_salt_run_event_send(salt_master, salt_run_cli, event_listener):
    tag = "myco/deploy/v1.2 done"
    started_at = time.time()

    result = salt_run_cli.run("event.send", tag, data={"version": "1.2"})

    assert result.returncode == 0, result
    assert result.data is True
    events = event_listener.wait_for_events(
        [(salt_master.id, tag)], after_time=started_at, timeout=30
    )
    assert events.found_all_events
    (event,) = list(events)
    assert event.data["version"] == "1.2"


def test_fire_master_event_helper(salt_master, fire_master_event, event_listener):
    tag = "myco/helper/check"
    started_at = time.time()

    fire_master_event(salt_master, tag, {"ok": True})

    events = event_listener.wait_for_events(
        [(salt_master.id, tag)], after_time=started_at, timeout=30
    )
    assert events.found_all_events


def test_master_log_is_readable(salt_master, daemon_log):
    master_log = daemon_log(salt_master)

    assert master_log.path.is_file()
    assert master_log.path.is_relative_to(salt_master.config["root_dir"])
    assert master_log.lines_matching(r"Setting up the Salt Master")
    assert master_log.lines_matching(r"\[(WARNING|ERROR|CRITICAL) *\]", include_cli=False) == []
