"""Faults around a real salt-master with the engine: slow, paused and absent NATS servers."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import psutil
import pytest

from salt_nats.codec import decode_payload
from tests.integration.test_engine import engine_stop_line
from tests.support.bus import fire_events
from tests.support.jetstream import create_stream, read_stream

pytestmark = pytest.mark.integration

# Salt 3008 logs this when a bus subscriber falls behind; "(stream closed)" is only a
# CLI process that exited, so it does not count.
SLOW_SUBSCRIBER = r"Publisher discarding slow subscriber .*\((drain|StreamBuffer|.*[Ff]ull)"


def stored_numbers(url: str, stream: str, expected: int, timeout: float = 60) -> list[int]:
    """Read the event numbers in a stream, waiting until ``expected`` are there."""
    deadline = time.monotonic() + timeout
    while True:
        numbers = [decode_payload(m.data)[1]["n"] for m in read_stream(url, stream)]
        if len(numbers) >= expected or time.monotonic() > deadline:
            return numbers
        time.sleep(0.5)


def test_paused_server_does_not_hang_engine(
    make_master: Any, make_nats_server: Any, daemon_log: Any
) -> None:
    nats_server = make_nats_server(name="paused", jetstream=True)
    master = make_master(
        engine_config={
            "servers": [nats_server.url],
            "mode": "jetstream",
            "stream": "PAUSED",
            "include": ["test/paused/*"],
            "ping_interval": 1,
            "max_outstanding_pings": 2,
            "connect_timeout": 1,
            "reconnect_time_wait": 0.2,
            "flush_timeout": 1,
            "ack_timeout": 2,
        }
    )
    log = daemon_log(master)
    log.wait_for(r"created JetStream stream PAUSED", timeout=30)

    # 200 events/s for 10 s; the server process is stopped (SIGSTOP) from second 2 to 8.
    firing = threading.Thread(
        target=fire_events, args=(master.config, "test/paused", 2000), kwargs={"rate": 200}
    )
    firing.start()
    time.sleep(2)
    nats_server.pause()
    try:
        log.wait_for(r"disconnected from NATS", timeout=15)
        time.sleep(2)
    finally:
        nats_server.resume()
    firing.join(timeout=60)
    assert not firing.is_alive()

    numbers = stored_numbers(nats_server.url, "PAUSED", 2000)
    master.terminate()
    counters = engine_stop_line(daemon_log, master)

    assert sorted(numbers) == list(range(2000))
    assert counters["dropped"] == {}
    assert counters["received"] - counters["filtered"] == 2000
    assert not log.lines_matching(SLOW_SUBSCRIBER)


def test_limits_exceeded_counts_every_drop(
    make_master: Any, make_minion: Any, make_nats_server: Any, daemon_log: Any
) -> None:
    nats_server = make_nats_server(name="limits", jetstream=True)
    create_stream(nats_server.url, "LIMITS", ["salt.events.test.limits.>"])
    master = make_master(
        engine_config={
            "servers": [nats_server.url],
            "include": ["test/limits/*"],
            "buffer_max_events": 100,
            "buffer_max_bytes": "64KiB",
            "reconnect_time_wait": 0.2,
        }
    )
    minion = make_minion(master, "db01.example.com")
    log = daemon_log(master)
    log.wait_for(r"connected to NATS server", timeout=30)
    nats_server.stop()

    # 3,000 events of about 1 KB each, as fast as the bus takes them, into a
    # buffer of 100 events and 64 KiB, while the master runs a job.
    firing = threading.Thread(
        target=fire_events,
        args=(master.config, "test/limits", 3000),
        kwargs={"payload": {"blob": "z" * 1000}},
    )
    firing.start()
    ping = master.salt_cli(timeout=30).run("test.ping", minion_tgt=minion.id)
    firing.join(timeout=120)
    assert not firing.is_alive()
    nats_server.start()
    time.sleep(3)
    master.terminate()

    counters = engine_stop_line(daemon_log, master)
    delivered = stored_numbers(nats_server.url, "LIMITS", 1, timeout=5)
    fired = 3000

    assert ping.returncode == 0, ping
    assert ping.data is True
    assert counters["received"] - counters["filtered"] == fired
    assert counters["dropped"]["buffer_full"] == fired - len(delivered)
    assert 0 < len(delivered) <= 100
    assert delivered == sorted(delivered)
    assert not log.lines_matching(SLOW_SUBSCRIBER)


def connected_node(cluster: Any, connection_name_part: str) -> Any:
    """Return the cluster node that has the engine's client connection."""
    for node in cluster.nodes:
        connections = node.monitor("connz").get("connections") or []
        if any(connection_name_part in (c.get("name") or "") for c in connections):
            return node
    raise AssertionError("no node holds the engine's connection")


def test_cluster_failover_keeps_every_event(
    make_master: Any, tmp_path: Any, daemon_log: Any
) -> None:
    from tests.support.nats_server import NatsCluster

    with NatsCluster(tmp_path / "cluster", size=3, name="failover") as cluster:
        master = make_master(
            engine_config={
                "name": "failover",
                "servers": cluster.urls,
                "mode": "jetstream",
                "stream": "FAILOVER",
                "stream_replicas": 3,
                "include": ["test/failover/*"],
                "reconnect_time_wait": 0.2,
                "ack_timeout": 2,
            }
        )
        log = daemon_log(master)
        log.wait_for(r"created JetStream stream FAILOVER", timeout=30)
        victim = connected_node(cluster, "salt-nats failover@")
        survivors = [node for node in cluster.nodes if node is not victim]

        # 300 events/s for 10 s; the node the engine uses dies at second 3.
        firing = threading.Thread(
            target=fire_events, args=(master.config, "test/failover", 3000), kwargs={"rate": 300}
        )
        firing.start()
        time.sleep(3)
        victim.kill()
        firing.join(timeout=60)
        assert not firing.is_alive()

        numbers = stored_numbers(survivors[0].url, "FAILOVER", 3000)
        master.terminate()
        counters = engine_stop_line(daemon_log, master)

    assert len(numbers) == 3000
    assert sorted(numbers) == list(range(3000))
    assert counters["dropped"] == {}
    assert log.lines_matching(r"reconnected to NATS server")


def engine_pid(log: Any, since: int = 0) -> int:
    """Return the PID of the engine process from its start line in the master log.

    The master's log format ends the record prefix with ``[<process name>(<pid>)]``.
    """
    (line, *_) = log.wait_for(r"salt-nats: starting engine", since=since, timeout=30)
    match = re.search(r"\((\d+)\)\]", line)
    assert match, line
    return int(match.group(1))


def test_killed_engine_is_restarted(
    make_master: Any, make_nats_server: Any, daemon_log: Any
) -> None:
    nats_server = make_nats_server(name="killed", jetstream=True)
    create_stream(nats_server.url, "KILLED", ["salt.events.test.killed.>"])
    master = make_master(engine_config={"servers": [nats_server.url], "include": ["test/killed/*"]})
    log = daemon_log(master)
    log.wait_for(r"connected to NATS server", timeout=30)
    fire_events(master.config, "test/killed", 10, start=0)
    assert stored_numbers(nats_server.url, "KILLED", 10) == list(range(10))

    victim = psutil.Process(engine_pid(log))
    mark = log.mark()
    victim.kill()
    victim.wait(timeout=10)
    # The master's process manager notices the dead engine and starts a new one.
    log.wait_for(r"connected to NATS server", since=mark, timeout=60)
    fire_events(master.config, "test/killed", 10, start=10)

    assert stored_numbers(nats_server.url, "KILLED", 20) == list(range(20))
    assert engine_pid(log, since=mark) != victim.pid


# --- the disk spool -------------------------------------------------------------------


def test_spool_survives_master_restart(
    make_master: Any, make_nats_server: Any, daemon_log: Any, tmp_path: Any
) -> None:
    nats_server = make_nats_server(name="restart", jetstream=True)
    master = make_master(
        engine_config={
            "servers": [nats_server.url],
            "mode": "jetstream",
            "stream": "RESTART",
            "include": ["test/restart/*"],
            "spool_dir": str(tmp_path / "spool"),
            "reconnect_time_wait": 0.2,
        }
    )
    log = daemon_log(master)
    log.wait_for(r"created JetStream stream RESTART", timeout=30)
    fire_events(master.config, "test/restart", 20, start=0)  # delivered at once
    time.sleep(1)
    nats_server.stop()
    fire_events(master.config, "test/restart", 200, start=20)  # spooled: NATS is down

    master.terminate()
    mark = log.mark()
    master.start()
    log.wait_for(r"200 spooled events from an earlier run", since=mark, timeout=60)
    fire_events(master.config, "test/restart", 200, start=220)  # spooled behind them
    nats_server.start()

    numbers = stored_numbers(nats_server.url, "RESTART", 420)
    master.terminate()

    # Retries after an acknowledgement timeout may change the order, never the set.
    assert len(numbers) == 420
    assert sorted(numbers) == list(range(420))


def test_spool_keeps_events_of_killed_engine(
    make_master: Any, make_nats_server: Any, daemon_log: Any, tmp_path: Any
) -> None:
    nats_server = make_nats_server(name="killspool", jetstream=True)
    create_stream(nats_server.url, "KILLSPOOL", ["salt.events.test.killspool.>"])
    master = make_master(
        engine_config={
            "servers": [nats_server.url],
            "include": ["test/killspool/*"],
            "spool_dir": str(tmp_path / "spool"),
            "reconnect_time_wait": 0.2,
        }
    )
    log = daemon_log(master)
    log.wait_for(r"connected to NATS server", timeout=30)
    nats_server.stop()
    fire_events(master.config, "test/killspool", 300)
    time.sleep(0.5)  # the reader hands the last events to the spool

    victim = psutil.Process(engine_pid(log))
    mark = log.mark()
    victim.kill()
    victim.wait(timeout=10)
    log.wait_for(r"300 spooled events from an earlier run", since=mark, timeout=60)
    nats_server.start()

    numbers = stored_numbers(nats_server.url, "KILLSPOOL", 300)

    assert numbers == list(range(300))
