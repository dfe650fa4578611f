"""``salt <minion> nats.publish`` on a real minion, with settings from its config and pillar."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.collector import NatsCollector
from tests.support.nats_server import NatsServer, get_free_port

pytestmark = pytest.mark.integration

MINION_ID = "web01.example.com"


@pytest.fixture(scope="module")
def pillar_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A second nats-server, named only in the pillar."""
    with NatsServer(tmp_path_factory.mktemp("nats-pillar"), name="nats-pillar") as server:
        yield server


@pytest.fixture(scope="module")
def master(make_master: Any) -> Any:
    return make_master()


@pytest.fixture(scope="module")
def minion(make_minion: Any, master: Any, nats_server_module: NatsServer) -> Any:
    return make_minion(master, MINION_ID, {"nats": {"servers": [nats_server_module.url]}})


@pytest.fixture(scope="module")
def salt_cli(master: Any, minion: Any) -> Any:
    return master.salt_cli(timeout=60)


def test_publish_reaches_subscriber(salt_cli: Any, nats_server_module: Any) -> None:
    with NatsCollector(nats_server_module.url, "minion.>") as collector:
        result = salt_cli.run(
            "nats.publish", "minion.deploy", '{"version": "1.2"}', minion_tgt=MINION_ID
        )
        (message,) = collector.wait_for(lambda m: m.subject == "minion.deploy", timeout=10)

    assert result.returncode == 0, result
    assert result.data == {
        "subject": "minion.deploy",
        "bytes": len(message.data),
        "server": nats_server_module.url,
    }
    assert message.json() == {"version": "1.2"}
    assert message.headers["Content-Type"] == "application/json"


def test_publish_text_with_headers(salt_cli: Any, nats_server_module: Any) -> None:
    with NatsCollector(nats_server_module.url, "minion.>") as collector:
        result = salt_cli.run(
            "nats.publish",
            "minion.note",
            "rebooting",
            'headers={"Team": "web", "Attempt": 2}',
            minion_tgt=MINION_ID,
        )
        (message,) = collector.wait_for(lambda m: m.subject == "minion.note", timeout=10)

    assert result.returncode == 0, result
    assert message.data == b"rebooting"
    assert message.headers == {"Team": "web", "Attempt": "2"}


def test_publish_unreachable_names_server(salt_cli: Any) -> None:
    port = get_free_port()
    started = time.monotonic()
    result = salt_cli.run(
        "nats.publish",
        "minion.x",
        "y",
        f"servers=nats://ops:s3cret@127.0.0.1:{port}",
        "timeout=3",
        minion_tgt=MINION_ID,
    )
    elapsed = time.monotonic() - started

    assert result.returncode != 0, result
    assert "NATS publish failed while connecting" in result.stdout
    assert f"nats://***@127.0.0.1:{port}" in result.stdout
    assert "s3cret" not in result.stdout
    assert elapsed < 30


def test_publish_token_auth(salt_cli: Any, make_nats_server: Any) -> None:
    server = make_nats_server(name="token", extra_config='authorization { token: "t0ken-s3cret" }')
    token_url = server.url.replace("nats://", "nats://t0ken-s3cret@")

    with NatsCollector(token_url, "minion.>") as collector:
        accepted = salt_cli.run(
            "nats.publish",
            "minion.auth",
            "with token",
            f"servers={server.url}",
            "token=t0ken-s3cret",
            minion_tgt=MINION_ID,
        )
        (message,) = collector.wait_for(lambda m: m.subject == "minion.auth", timeout=10)
    rejected = salt_cli.run(
        "nats.publish",
        "minion.auth",
        "wrong token",
        f"servers={server.url}",
        "token=wrong-s3cret",
        "timeout=3",
        minion_tgt=MINION_ID,
    )

    assert accepted.returncode == 0, accepted
    assert message.data == b"with token"
    assert rejected.returncode != 0, rejected
    assert "Authorization" in rejected.stdout
    assert server.url in rejected.stdout
    assert "wrong-s3cret" not in rejected.stdout


def test_publish_invalid_server_option(salt_cli: Any) -> None:
    result = salt_cli.run(
        "nats.publish", "minion.x", "y", "servers=ftp://host", minion_tgt=MINION_ID
    )

    assert result.returncode != 0, result
    assert "invalid NATS setting from the servers argument" in result.stdout
    assert "not a NATS server URL" in result.stdout


def test_publish_invalid_subject(salt_cli: Any) -> None:
    result = salt_cli.run("nats.publish", "minion.>", "y", minion_tgt=MINION_ID)

    assert result.returncode != 0, result
    assert "wildcards" in result.stdout


def test_pillar_flat_key_overrides_config(
    master: Any, salt_cli: Any, pillar_nats: NatsServer
) -> None:
    top = "base:\n  '*':\n    - nats\n"
    pillar = f"nats.servers: {pillar_nats.url}\n"
    with (
        master.pillar_tree.base.temp_file("top.sls", top),
        master.pillar_tree.base.temp_file("nats.sls", pillar),
    ):
        refreshed = salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt=MINION_ID)
        assert refreshed.returncode == 0, refreshed
        with NatsCollector(pillar_nats.url, "minion.>") as collector:
            result = salt_cli.run(
                "nats.publish", "minion.pillar", "from pillar", minion_tgt=MINION_ID
            )
            (message,) = collector.wait_for(lambda m: m.subject == "minion.pillar", timeout=10)
    restored = salt_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt=MINION_ID)

    assert result.returncode == 0, result
    assert result.data["server"] == pillar_nats.url
    assert message.data == b"from pillar"
    assert restored.returncode == 0, restored
