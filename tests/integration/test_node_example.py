"""The Node.js example: decode.js passes the shared vectors, and consumer.js prints real events.

The consumer subscribes to a nats-server that a real salt-master with the nats engine
publishes to, and the tests run jobs on a real minion.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.node import NODE_EXAMPLE, NodeProcess, ensure_node_modules, require_node

pytestmark = pytest.mark.integration

MINION_ID = "web01.example.com"


@pytest.fixture(scope="module")
def node() -> str:
    node = require_node()
    ensure_node_modules(NODE_EXAMPLE)
    return node


@pytest.fixture(scope="module")
def engine_master(make_master: Any, nats_server_module: Any) -> Any:
    return make_master(
        engine_config={"servers": [nats_server_module.url], "name": "node"},
        master_id="node-master",
    )


@pytest.fixture(scope="module")
def engine_minion(make_minion: Any, engine_master: Any) -> Any:
    return make_minion(engine_master, MINION_ID)


def start_consumer(node: str, url: str, *options: str) -> NodeProcess:
    consumer = NodeProcess([node, "consumer.js", url, "salt.events.>", *options], cwd=NODE_EXAMPLE)
    try:
        consumer.wait_for_line(lambda line: "subscribed to" in line, stream="stderr", timeout=20)
    except BaseException:
        consumer.stop()
        raise
    return consumer


@pytest.fixture(scope="module")
def summary_consumer(node: str, nats_server_module: Any, engine_minion: Any) -> Iterator[Any]:
    with start_consumer(node, nats_server_module.url) as consumer:
        yield consumer


@pytest.fixture(scope="module")
def json_consumer(node: str, nats_server_module: Any, engine_minion: Any) -> Iterator[Any]:
    with start_consumer(node, nats_server_module.url, "--json") as consumer:
        yield consumer


def summary_fields(line: str) -> dict[str, str]:
    """Parse the ``key=value`` fields of a summary line. Quoted values are JSON strings."""
    fields = {}
    for match in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line):
        value = match.group(2)
        fields[match.group(1)] = json.loads(value) if value.startswith('"') else value
    return fields


def test_decoder_passes_shared_vectors(node: str) -> None:
    result = subprocess.run(
        [node, "--test"], cwd=NODE_EXAMPLE, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
    assert re.search(r"# pass [1-9]\d*", result.stdout), result.stdout[-2000:]


def test_consumer_prints_ping_job(engine_master: Any, summary_consumer: Any) -> None:
    result = engine_master.salt_cli(timeout=30).run("test.ping", minion_tgt=MINION_ID)
    assert result.returncode == 0, result

    ret_line = summary_consumer.wait_for_line(
        lambda line: " fun=test.ping " in line and f"/ret/{MINION_ID} " in line
    )
    ret = summary_fields(ret_line)
    jid = ret["jid"]
    new_line = summary_consumer.wait_for_line(
        lambda line: f"tag=salt/job/{jid}/new " in line, timeout=10
    )
    new = summary_fields(new_line)

    assert ret["tag"] == f"salt/job/{jid}/ret/{MINION_ID}"
    assert ret["minion"] == MINION_ID
    assert ret["success"] == "true"
    assert ret["retcode"] == "0"
    assert re.fullmatch(r"\d{20}", jid), jid
    assert new["fun"] == "test.ping"
    assert new["minions"] == MINION_ID


def test_consumer_prints_state_return_with_space(engine_master: Any, json_consumer: Any) -> None:
    result = engine_master.salt_cli(timeout=60).run(
        "state.single", "test.succeed_with_changes", "name=a b", minion_tgt=MINION_ID
    )
    assert result.returncode == 0, result

    line = json_consumer.wait_for_line(
        lambda line: '"fun":"state.single"' in line and f'/ret/{MINION_ID}"' in line,
        timeout=60,
    )
    event = json.loads(line)
    (state_id,) = event["data"]["return"]

    assert event["tag"] == f"salt/job/{event['data']['jid']}/ret/{MINION_ID}"
    assert event["subject"].endswith(".ret.web01%2Eexample%2Ecom")
    assert event["origin"] == MINION_ID
    assert event["master"] == "node-master"
    assert event["headers"]["Content-Type"] == "application/json"
    assert state_id == "test_|-a b_|-a b_|-succeed_with_changes"
    assert event["data"]["return"][state_id]["result"] is True
    assert event["data"]["success"] is True


def test_consumer_decodes_custom_tags(engine_minion: Any, json_consumer: Any) -> None:
    tags = ["myco/deploy/v1.2 done", "myco/wild/*/>/100%", "myco/long/" + "x" * 5000]
    salt_call = engine_minion.salt_call_cli(timeout=30)
    for tag in tags:
        result = salt_call.run("event.send", tag, marker="node-example")
        assert result.returncode == 0, result

    for tag in tags:
        line = json_consumer.wait_for_line(
            lambda line, tag=tag: f'"tag":{json.dumps(tag)}' in line, timeout=30
        )
        event = json.loads(line)

        assert event["data"]["data"]["marker"] == "node-example"
        assert event["origin"] == MINION_ID

    subjects = [json.loads(line)["subject"] for line in json_consumer.stdout_lines]
    assert "salt.events.myco.deploy.v1%2E2%20done" in subjects
    assert "salt.events.myco.wild.%2A.%3E.100%25" in subjects
    assert any(re.fullmatch(r"salt\.events\.myco\.long\.%%[0-9a-f]{16}", s) for s in subjects)


def test_consumer_stops_on_sigterm(node: str, nats_server_module: Any) -> None:
    consumer = start_consumer(node, nats_server_module.url)

    code = consumer.stop()

    assert code == 0, consumer.output()
    assert any("stopped after printing" in line for line in consumer.stderr_lines), (
        consumer.output()
    )
