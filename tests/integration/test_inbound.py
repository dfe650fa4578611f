"""The inbound bridge in a real master: a reactor acts on NATS messages, abuse is refused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from salt_nats.codec import decode_payload
from tests.support.bus import fire_events
from tests.support.collector import NatsCollector, publish

pytestmark = pytest.mark.integration

MINION_ID = "web01.example.com"

REACTOR_SLS = """
ping_from_nats:
  local.test.ping:
    - tgt: {minion}
"""


@pytest.fixture(scope="module")
def reactor_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reactor") / "ping.sls"
    path.write_text(REACTOR_SLS.format(minion=MINION_ID))
    return path


@pytest.fixture(scope="module")
def inbound_master(make_master: Any, nats_server_module: Any, reactor_file: Path) -> Any:
    return make_master(
        engine_config={
            "servers": [nats_server_module.url],
            "name": "bridge",
            "heartbeat_interval": 1,
            "inbound": {
                "subjects": ["ops.>", "salt.events.myco.>"],
                "max_bytes": 1024,
                "rate": 2,
                "burst": 10,
            },
        },
        extra_config={"reactor": [{"nats/inbound/ops/ping": [str(reactor_file)]}]},
        master_id="inbound-master",
    )


@pytest.fixture(scope="module")
def inbound_minion(make_minion: Any, inbound_master: Any) -> Any:
    return make_minion(inbound_master, MINION_ID)


def bridge_counters(master: Any, expected: str, minimum: int, timeout: float = 15) -> dict:
    """Read the bridge counters from the engine's status file once ``expected`` is reached."""
    path = Path(master.config["cachedir"]) / "salt-nats" / "bridge.json"
    deadline = time.monotonic() + timeout
    counters: dict = {}
    while time.monotonic() < deadline:
        if path.exists():
            counters = json.loads(path.read_text()).get("inbound") or {}
            value = counters.get("rejected", {}).get(expected, 0) if expected else 0
            if expected == "fired":
                value = counters.get("fired", 0)
            if value >= minimum:
                return counters
        time.sleep(0.3)
    return counters


def test_reactor_runs_on_inbound_message(
    inbound_master: Any, inbound_minion: Any, nats_server_module: Any, daemon_log: Any
) -> None:
    daemon_log(inbound_master).wait_for(r"inbound bridge subscribed", timeout=30)
    with NatsCollector(nats_server_module.url, "salt.events.salt.job.>") as jobs:
        publish(nats_server_module.url, "ops.ping", json.dumps({"reason": "test"}).encode())

        def is_ping_return(message: Any) -> bool:
            _, data = decode_payload(message.data)
            return ".ret." in message.subject and data.get("fun") == "test.ping"

        (ret,) = jobs.wait_for(is_ping_return, timeout=60)

    assert decode_payload(ret.data)[1]["return"] is True


def test_forged_and_malformed_messages_rejected(
    inbound_master: Any, inbound_minion: Any, nats_server_module: Any, daemon_log: Any
) -> None:
    daemon_log(inbound_master).wait_for(r"inbound bridge subscribed", timeout=30)
    time.sleep(6)  # let the rate limiter refill after the reactor test
    url = nats_server_module.url
    with NatsCollector(url, "salt.events.>") as events:
        publish(url, "ops.x%2F%2E%2E%2Fsalt", b"{}")  # percent escapes are not decoded
        publish(url, "ops.caf\u00e9", b"{}")  # outside the safe alphabet
        publish(url, "ops.big", json.dumps({"x": "y" * 5000}).encode())
        publish(url, "ops.bad", b"{not json")
        publish(url, "ops.list", b"[1, 2, 3]")
        counters = bridge_counters(inbound_master, "invalid_payload", 2)

        assert counters["rejected"]["invalid_subject"] == 2
        assert counters["rejected"]["too_large"] == 1
        assert counters["rejected"]["invalid_payload"] == 2
        time.sleep(1)
        forwarded_tags = [m.headers.get("Salt-Tag", "") for m in events.messages]

    assert not [tag for tag in forwarded_tags if tag.startswith("nats/inbound/")]
    assert not [tag for tag in forwarded_tags if "salt" in tag.split("/")[:1]]


def test_flood_is_rate_limited(
    inbound_master: Any, inbound_minion: Any, nats_server_module: Any
) -> None:
    time.sleep(6)
    for n in range(60):
        publish(nats_server_module.url, "ops.flood", json.dumps({"n": n}).encode())
    counters = bridge_counters(inbound_master, "rate_limited", 40)

    assert counters["rejected"]["rate_limited"] >= 40
    result = inbound_master.salt_cli(timeout=30).run("test.ping", minion_tgt=MINION_ID)
    assert result.data is True


def test_own_events_do_not_loop(
    inbound_master: Any, inbound_minion: Any, nats_server_module: Any
) -> None:
    # The engine's own publishes never come back on its connection (no_echo). A copy
    # published by another instance of this master carries its Salt-Master header.
    fire_events(inbound_master.config, "myco/loop", 3)
    own = {"Salt-Master": "inbound-master"}
    for n in range(3):
        publish(nats_server_module.url, f"salt.events.myco.copy.{n}", b"{}", headers=own)
    counters = bridge_counters(inbound_master, "loop", 3)

    assert counters["rejected"]["loop"] == 3
    assert counters["fired"] >= 1
