"""JetStream mode in a real salt-master: acknowledgements, retries and exactly-once storage."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from salt_nats.codec import decode_payload
from tests.integration.test_engine import engine_stop_line
from tests.support.bus import fire_events
from tests.support.jetstream import read_stream

pytestmark = pytest.mark.integration


def stored_numbers(url: str, stream: str) -> list[int]:
    return [decode_payload(m.data)[1]["n"] for m in read_stream(url, stream)]


def test_outage_stores_each_event_once(
    make_master: Any, make_nats_server: Any, daemon_log: Any
) -> None:
    nats_server = make_nats_server(name="js-outage", jetstream=True)
    master = make_master(
        engine_config={
            "servers": [nats_server.url],
            "mode": "jetstream",
            "stream": "OUTAGE",
            "include": ["test/js/*"],
            "reconnect_time_wait": 0.2,
            "ack_timeout": 2,
        }
    )
    daemon_log(master).wait_for(r"created JetStream stream OUTAGE", timeout=30)

    # 500 events/s for 14 s; NATS is down from second 2 to second 12.
    firing = threading.Thread(
        target=fire_events, args=(master.config, "test/js", 7000), kwargs={"rate": 500}
    )
    firing.start()
    time.sleep(2)
    nats_server.stop()
    time.sleep(10)
    nats_server.start()
    firing.join(timeout=60)
    assert not firing.is_alive()

    deadline = time.monotonic() + 60
    numbers: list[int] = []
    while time.monotonic() < deadline:
        numbers = stored_numbers(nats_server.url, "OUTAGE")
        if len(numbers) >= 7000:
            break
        time.sleep(1)
    master.terminate()
    counters = engine_stop_line(daemon_log, master)

    assert len(numbers) == 7000
    assert sorted(numbers) == list(range(7000))
    assert counters["dropped"] == {}
    assert counters["acknowledged"] >= 7000
