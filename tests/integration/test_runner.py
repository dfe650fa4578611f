"""salt-run nats.status, nats.publish, nats.request and nats.test on a real master.

The module's master runs two engine instances: ``bus-a`` on the module's nats-server
and ``bus-b`` on a second server that tests stop and start. Tests that break
something (a stopped server, a stopped engine process, an edited config file) put
it back before they end, so the order of the tests does not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import salt.utils.yaml
import yaml
from nats.aio.msg import Msg

from salt_nats.control import read_heartbeat
from salt_nats.micro import status_subject
from tests.support.collector import NatsCollector
from tests.support.nats_server import NatsServer, get_free_port

pytestmark = pytest.mark.integration

MASTER_ID = "runner-master"

# bus-b writes its status file every 2 s, so it counts as down 6 s after its
# last write: short enough for a test, and longer than a salt-run start.
BUS_B_HEARTBEAT_INTERVAL = 2
BUS_B_STALE_AFTER = 3 * BUS_B_HEARTBEAT_INTERVAL

STATUS_WAIT_TIMEOUT = 40.0


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def second_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(tmp_path_factory.mktemp("nats-b"), name="nats-b") as server:
        yield server


@pytest.fixture(scope="module")
def engine_master(make_master: Any, nats_server_module: NatsServer, second_nats: NatsServer) -> Any:
    engines = [
        {"bus-a": {"engine_module": "nats", "servers": [nats_server_module.url]}},
        {
            "bus-b": {
                "engine_module": "nats",
                "servers": [second_nats.url],
                "heartbeat_interval": BUS_B_HEARTBEAT_INTERVAL,
                "reconnect_time_wait": 0.2,
            }
        },
    ]
    return make_master(extra_config={"engines": engines}, master_id=MASTER_ID)


@pytest.fixture(scope="module")
def salt_run(engine_master: Any) -> Any:
    salt_run = engine_master.salt_run_cli(timeout=60)
    wait_for_status(
        salt_run, lambda view: states(view) == {"bus-a": "connected", "bus-b": "connected"}
    )
    return salt_run


@pytest.fixture(scope="module")
def healthy_status(salt_run: Any) -> Any:
    """One `salt-run nats.status` result with both instances connected."""
    return salt_run.run("nats.status")


# --- helpers ---------------------------------------------------------------------------


def states(view: Any) -> dict[str, str]:
    """Return the state of each instance in a status view."""
    if not isinstance(view, dict):
        return {}
    return {name: result.get("state") for name, result in view.get("instances", {}).items()}


def wait_for_status(
    salt_run: Any,
    predicate: Callable[[Any], bool],
    *args: str,
    timeout: float = STATUS_WAIT_TIMEOUT,
) -> Any:
    """Run `salt-run nats.status` until its view matches ``predicate``, and return the result."""
    deadline = time.monotonic() + timeout
    while True:
        result = salt_run.run("nats.status", *args)
        if predicate(result.data):
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"nats.status did not reach the expected view in {timeout} s: {result}")
        time.sleep(0.5)


def connected_again(salt_run: Any) -> None:
    wait_for_status(
        salt_run,
        lambda view: (
            states(view) == {"bus-a": "connected", "bus-b": "connected"}
            and view["instances"]["bus-b"]["source"] == "reply"
        ),
    )


def wait_for_heartbeat(master: Any, instance: str, state: str, timeout: float = 10.0) -> None:
    """Wait until the status file of ``instance`` contains ``state``."""
    status_dir = Path(master.config["cachedir"]) / "salt-nats"
    deadline = time.monotonic() + timeout
    while True:
        heartbeat = read_heartbeat(status_dir, instance)
        if heartbeat is not None and heartbeat.get("state") == state:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"the status file of {instance} did not show {state} in {timeout} s")
        time.sleep(0.2)


class Responder:
    """Reply to NATS requests on ``svc.>`` from a background thread.

    ``svc.echo`` replies with a JSON object that echoes the request, with the header
    ``Responder: echo``. ``svc.text`` replies with the plain text ``pong``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._client: Any = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> Any:
        client = await nats.connect(self.url, connect_timeout=2, allow_reconnect=False)
        await client.subscribe("svc.>", cb=self._reply)
        await client.flush()
        return client

    async def _reply(self, message: Msg) -> None:
        if message.subject == "svc.text":
            await message.respond(b"pong")
            return
        body = {"echo": message.data.decode(), "headers": dict(message.headers or {})}
        await self._client.publish(
            message.reply, json.dumps(body).encode(), headers={"Responder": "echo"}
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


# --- nats.status -----------------------------------------------------------------------


def test_status_connected_with_counters(healthy_status: Any, nats_server_module: Any) -> None:
    view = healthy_status.data
    bus_a = view["instances"]["bus-a"]

    assert healthy_status.returncode == 0, healthy_status
    assert view["retcode"] == 0
    assert view["master"] == MASTER_ID
    assert view["warnings"] == []
    assert bus_a["state"] == "connected"
    assert bus_a["source"] == "reply"
    assert bus_a["configured"] is True
    assert bus_a["server"] == nats_server_module.url
    assert bus_a["uptime"] > 0
    assert bus_a["lag_seconds"] >= 0
    assert bus_a["dropped"] == {}
    assert bus_a["last_error"] is None
    for counter in ("received", "published", "filtered", "acknowledged", "buffered"):
        assert isinstance(bus_a["counters"][counter], int), counter
    assert bus_a["counters"]["received"] >= bus_a["counters"]["published"]


def test_status_lists_both_instances(healthy_status: Any, second_nats: Any) -> None:
    instances = healthy_status.data["instances"]

    assert list(instances) == ["bus-a", "bus-b"]
    assert instances["bus-b"]["state"] == "connected"
    assert instances["bus-b"]["entry"] == "bus-b"
    assert instances["bus-b"]["server"] == second_nats.url
    assert instances["bus-a"]["pid"] != instances["bus-b"]["pid"]


def test_status_output_formats(salt_run: Any) -> None:
    as_json = salt_run.run("nats.status", "--out=json")
    as_yaml = salt_run.run("nats.status", "--out=yaml")
    as_nested = salt_run.run("nats.status", "--out=nested")

    assert as_json.returncode == 0, as_json
    assert states(json.loads(as_json.stdout)) == {"bus-a": "connected", "bus-b": "connected"}
    assert as_yaml.returncode == 0, as_yaml
    assert states(yaml.safe_load(as_yaml.stdout)) == {"bus-a": "connected", "bus-b": "connected"}
    assert as_nested.returncode == 0, as_nested
    assert "bus-a:" in as_nested.stdout
    assert "bus-b:" in as_nested.stdout
    assert "connected" in as_nested.stdout
    assert "received:" in as_nested.stdout


def test_status_nats_stopped_reconnecting(salt_run: Any, second_nats: NatsServer) -> None:
    second_nats.stop()
    try:
        result = wait_for_status(
            salt_run, lambda view: states(view).get("bus-b") == "reconnecting", timeout=20
        )
        smoke = salt_run.run("nats.test", "instance=bus-b", "timeout=2")
    finally:
        second_nats.start()
    bus_b = result.data["instances"]["bus-b"]

    assert result.returncode == 0, result
    assert bus_b["source"] == "reply"
    assert bus_b["server"] is None
    assert bus_b["counters"]["nats_disconnects"] >= 1
    assert bus_b["last_error"]
    assert bus_b["last_error_time"]
    assert result.data["instances"]["bus-a"]["state"] == "connected"
    assert smoke.returncode == 1, smoke
    assert smoke.data["result"] is False
    assert second_nats.url in smoke.data["error"]

    connected_again(salt_run)


def test_status_stuck_engine(salt_run: Any, healthy_status: Any, engine_master: Any) -> None:
    # The status file may still contain the state of an earlier test for one interval.
    wait_for_heartbeat(engine_master, "bus-b", "connected")

    # A stopped process (SIGSTOP) exists but replies to nothing, like a stuck engine.
    pid = healthy_status.data["instances"]["bus-b"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        fresh = salt_run.run("nats.status", "timeout=1")
        time.sleep(max(BUS_B_STALE_AFTER + 1 - (time.monotonic() - stopped_at), 0))
        stale = salt_run.run("nats.status", "timeout=1")
    finally:
        os.kill(pid, signal.SIGCONT)
    from_file = fresh.data["instances"]["bus-b"]
    down = stale.data["instances"]["bus-b"]

    assert fresh.returncode == 0, fresh
    assert from_file["state"] == "connected"
    assert from_file["source"] == "heartbeat"
    assert from_file["pid"] == pid
    assert from_file["heartbeat_age"] < BUS_B_STALE_AFTER
    assert "did not reply" in from_file["note"]
    assert stale.returncode == 1, stale
    assert stale.data["retcode"] == 1
    assert down["state"] == "down"
    assert down["last_state"] == "connected"
    assert down["heartbeat_age"] > BUS_B_STALE_AFTER
    assert stale.data["instances"]["bus-a"]["state"] == "connected"

    connected_again(salt_run)


def test_status_configured_not_running(salt_run: Any, engine_master: Any) -> None:
    # An entry added to the config file after the master started: the runner reads
    # the file, but the master never started this instance.
    config_file = Path(engine_master.config_file)
    original = config_file.read_text(encoding="utf-8")
    config = salt.utils.yaml.safe_load(original)
    config["engines"].append(
        {"ghost": {"engine_module": "nats", "servers": ["nats://127.0.0.1:1"]}}
    )
    config_file.write_text(salt.utils.yaml.safe_dump(config), encoding="utf-8")
    try:
        result = salt_run.run("nats.status", "timeout=1")
    finally:
        config_file.write_text(original, encoding="utf-8")
    ghost = result.data["instances"]["ghost"]

    assert result.returncode == 1, result
    assert ghost["state"] == "down"
    assert ghost["source"] == "none"
    assert ghost["configured"] is True
    assert "no status file ghost.json" in ghost["note"]
    assert states(result.data)["bus-a"] == "connected"


def test_status_failed_config(make_master: Any, nats_server_module: Any) -> None:
    engines = [
        {
            "broken": {
                "engine_module": "nats",
                "servers": [nats_server_module.url],
                "buffer_max_events": 0,
            }
        }
    ]
    master = make_master(extra_config={"engines": engines}, master_id="failed-master")
    salt_run = master.salt_run_cli(timeout=60)

    result = wait_for_status(salt_run, lambda view: states(view).get("broken") == "failed")
    broken = result.data["instances"]["broken"]
    smoke = salt_run.run("nats.test", "instance=broken")

    assert result.returncode == 1, result
    assert result.data["retcode"] == 1
    assert broken["source"] == "reply"
    assert "buffer_max_events" in broken["last_error"]
    assert broken["last_error_time"]
    assert smoke.returncode == 1, smoke
    assert "invalid NATS settings of instance 'broken'" in smoke.data["error"]


# --- nats.publish ----------------------------------------------------------------------


def test_publish_json_with_headers(salt_run: Any, nats_server_module: Any) -> None:
    with NatsCollector(nats_server_module.url, "ops.>") as collector:
        result = salt_run.run(
            "nats.publish", "ops.deploy", '{"version": "1.2"}', 'headers={"Team": "web"}'
        )
        (message,) = collector.wait_for(lambda m: m.subject == "ops.deploy", timeout=10)

    assert result.returncode == 0, result
    assert result.data["result"] is True
    assert result.data["subject"] == "ops.deploy"
    assert result.data["bytes"] == len(message.data)
    assert result.data["server"] == nats_server_module.url
    assert result.data["instance"] == "bus-a"
    assert message.json() == {"version": "1.2"}
    assert message.headers["Content-Type"] == "application/json"
    assert message.headers["Team"] == "web"


def test_publish_text_as_utf8(salt_run: Any, nats_server_module: Any) -> None:
    with NatsCollector(nats_server_module.url, "ops.>") as collector:
        result = salt_run.run("nats.publish", "ops.note", "déploiement fini")
        (message,) = collector.wait_for(lambda m: m.subject == "ops.note", timeout=10)

    assert result.returncode == 0, result
    assert message.data == "déploiement fini".encode()
    assert "Content-Type" not in message.headers


def test_publish_other_instance(salt_run: Any, second_nats: Any) -> None:
    with NatsCollector(second_nats.url, "ops.>") as collector:
        result = salt_run.run("nats.publish", "ops.b", "hello", "instance=bus-b")
        collector.wait_for(lambda m: m.subject == "ops.b", timeout=10)

    assert result.returncode == 0, result
    assert result.data["server"] == second_nats.url
    assert result.data["instance"] == "bus-b"


def test_publish_unreachable_hides_password(salt_run: Any) -> None:
    port = get_free_port()
    started = time.monotonic()
    result = salt_run.run(
        "nats.publish", "ops.x", "y", f"servers=nats://ops:s3cret@127.0.0.1:{port}", "timeout=3"
    )
    elapsed = time.monotonic() - started

    assert result.returncode == 1, result
    assert result.data["result"] is False
    assert f"nats://***@127.0.0.1:{port}" in result.data["error"]
    assert "s3cret" not in result.stdout
    assert elapsed < 20


def test_publish_invalid_subject(salt_run: Any) -> None:
    result = salt_run.run("nats.publish", "ops.*", "y")

    assert result.returncode == 1, result
    assert "wildcards" in result.data["error"]


# --- nats.request ----------------------------------------------------------------------


def test_request_reply_json_and_text(salt_run: Any, nats_server_module: Any) -> None:
    responder = Responder(nats_server_module.url)
    try:
        echo = salt_run.run("nats.request", "svc.echo", "ping", 'headers={"Trace": "t1"}')
        text = salt_run.run("nats.request", "svc.text", "ping")
    finally:
        responder.close()

    assert echo.returncode == 0, echo
    assert echo.data["reply"]["data"] == {"echo": "ping", "headers": {"Trace": "t1"}}
    assert echo.data["reply"]["headers"] == {"Responder": "echo"}
    assert echo.data["elapsed_ms"] > 0
    assert text.returncode == 0, text
    assert text.data["reply"]["data"] == "pong"
    assert text.data["reply"]["bytes"] == 4


def test_request_without_responder(salt_run: Any) -> None:
    result = salt_run.run("nats.request", "svc.nobody", "ping", "timeout=2")

    assert result.returncode == 1, result
    assert "no subscriber listens" in result.data["error"]


def test_micro_service_matches_status(salt_run: Any, healthy_status: Any) -> None:
    info = salt_run.run("nats.request", "$SRV.INFO.salt-nats")
    endpoint = salt_run.run("nats.request", status_subject(MASTER_ID, "bus-a"))
    runner_view = healthy_status.data["instances"]["bus-a"]
    report = endpoint.data["reply"]["data"]

    assert info.returncode == 0, info
    assert info.data["reply"]["data"]["name"] == "salt-nats"
    assert info.data["reply"]["data"]["metadata"] == {"master": MASTER_ID, "instance": "bus-a"}
    assert endpoint.returncode == 0, endpoint
    assert report["instance"] == "bus-a"
    assert report["state"] == runner_view["state"] == "connected"
    assert report["pid"] == runner_view["pid"]
    assert report["server"] == runner_view["server"]
    assert report["started_at"] == runner_view["started_at"]


# --- nats.test -------------------------------------------------------------------------


def test_round_trip_latency(salt_run: Any, nats_server_module: Any) -> None:
    result = salt_run.run("nats.test")
    data = result.data

    assert result.returncode == 0, result
    assert data["result"] is True
    assert data["instance"] == "bus-a"
    assert data["tag"].startswith("nats/test/")
    assert data["subject"] == "salt.events." + data["tag"].replace("/", ".")
    assert data["server"] == nats_server_module.url
    assert 0 < data["latency_ms"] < 10_000


def test_round_trip_filtered_tag(salt_run: Any) -> None:
    result = salt_run.run("nats.test", "tag=salt-nats/probe")

    assert result.returncode == 1, result
    assert result.data["result"] is False
    assert "filter out the tag" in result.data["error"]
