"""The browser example in headless Chromium, fed by a real master, minions and nats-server.

nats-server runs with the example's own ``nats-server.conf`` (WebSocket and users) on
free loopback ports. ``serve.js`` serves the page on 127.0.0.1, and
``tools/drive-page.mjs`` loads it in Chromium through playwright-core, logs in as the
read-only user and reports what the page shows in reply to the test's commands.

Set ``UPDATE_SCREENSHOT=1`` to write the screenshot to ``docs/_static/browser.png``.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import http.client
import json
import os
import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.support.collector import NatsCollector, ReceivedMessage
from tests.support.nats_server import LOOPBACK, NatsServer, get_free_port
from tests.support.node import (
    BROWSER_EXAMPLE,
    ROOT,
    NodeProcess,
    ensure_chromium,
    ensure_node_modules,
    require_node,
)

pytestmark = pytest.mark.integration

EXAMPLE_CONFIG = BROWSER_EXAMPLE / "nats-server.conf"
SCREENSHOT = ROOT / "docs" / "_static" / "browser.png"

# The users of the example config.
MASTER_USER, MASTER_PASSWORD = "salt-master", "change-me-master"
VIEWER_USER, VIEWER_PASSWORD = "salt-viewer", "change-me-viewer"

WEB = "web01.example.com"
DB = "db01.example.com"
STATE_ID = "test_|-a b_|-a b_|-succeed_with_changes"


def example_server_config(websocket_port: int, page_origin: str) -> str:
    """Return the example config with its WebSocket on ``websocket_port``.

    The client port comes from ``NatsServer``, so the example's ``listen`` line goes,
    and the page's origin replaces the example's ``http://127.0.0.1:8000``.
    """
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    text, listens = re.subn(r"(?m)^listen: 127\.0\.0\.1:4222\n", "", text)
    text, ports = re.subn(r"(?m)^(\s+port:) 8080$", rf"\g<1> {websocket_port}", text)
    text, origins = re.subn(r'"http://127\.0\.0\.1:8000"', f'"{page_origin}"', text)

    assert listens == 1, f"{EXAMPLE_CONFIG} has no line 'listen: 127.0.0.1:4222'"
    assert ports == 1, f"{EXAMPLE_CONFIG} has no websocket line 'port: 8080'"
    assert origins == 1, f"{EXAMPLE_CONFIG} does not allow the origin http://127.0.0.1:8000"
    assert "host: 127.0.0.1" in text, f"the websocket block of {EXAMPLE_CONFIG} must bind 127.0.0.1"
    for password in (MASTER_PASSWORD, VIEWER_PASSWORD):
        assert password in text, f"{EXAMPLE_CONFIG} no longer sets the password {password!r}"
    return text


@pytest.fixture(scope="module")
def node() -> str:
    node = require_node()
    ensure_node_modules(BROWSER_EXAMPLE)
    return node


@pytest.fixture(scope="module")
def chromium() -> Path:
    return ensure_chromium()


@pytest.fixture(scope="module")
def websocket_port() -> int:
    return get_free_port()


@pytest.fixture(scope="module")
def nats_ws(
    tmp_path_factory: pytest.TempPathFactory, websocket_port: int, page_url: str
) -> Iterator[NatsServer]:
    server = NatsServer(
        tmp_path_factory.mktemp("nats-ws"),
        name="nats-ws",
        extra_config=example_server_config(websocket_port, page_url.rstrip("/")),
    )
    with server:
        yield server


def master_url(server: NatsServer) -> str:
    return f"nats://{MASTER_USER}:{MASTER_PASSWORD}@{LOOPBACK}:{server.port}"


@pytest.fixture(scope="module")
def engine_master(make_master: Any, nats_ws: NatsServer) -> Any:
    return make_master(
        engine_config={"servers": [master_url(nats_ws)], "name": "browser"},
        master_id="browser-master",
    )


@pytest.fixture(scope="module")
def minions(make_minion: Any, engine_master: Any) -> list[Any]:
    return [make_minion(engine_master, WEB), make_minion(engine_master, DB)]


@pytest.fixture(scope="module")
def page_url(node: str) -> Iterator[str]:
    with NodeProcess([node, "serve.js", "--port", "0"], cwd=BROWSER_EXAMPLE) as server:
        line = server.wait_for_line(lambda line: line.startswith("serving "), timeout=30)
        url = line.split()[1]
        assert url.startswith(f"http://{LOOPBACK}:"), line
        yield url


class PageDriver:
    """Send commands to tools/drive-page.mjs and return its JSON replies."""

    def __init__(self, process: NodeProcess) -> None:
        self.process = process

    def ask(self, command: str, timeout: float = 45.0, **arguments: Any) -> dict[str, Any]:
        since = len(self.process.stdout_lines)
        self.process.send_line(json.dumps({"command": command, **arguments}))
        line = self.process.wait_for_line(
            lambda line: line.startswith("{") and json.loads(line).get("command") == command,
            since=since,
            timeout=timeout,
        )
        reply = json.loads(line)

        assert "error" not in reply, f"{command} failed: {reply['error']}\n{self.process.output()}"
        assert reply["problems"] == [], f"the page reported problems: {reply['problems']}"
        return reply


@pytest.fixture(scope="module")
def page(
    node: str, chromium: Path, page_url: str, nats_ws: NatsServer, websocket_port: int, minions: Any
) -> Iterator[PageDriver]:
    url = f"{page_url}?server=ws://{LOOPBACK}:{websocket_port}"
    command = [node, "tools/drive-page.mjs", "--url", url, "--chromium", str(chromium)]
    env = {"NATS_USER": VIEWER_USER, "NATS_PASSWORD": VIEWER_PASSWORD}
    with NodeProcess(command, cwd=BROWSER_EXAMPLE, env=env, stdin=True) as driver:
        ready = json.loads(driver.wait_for_line(lambda line: '"ready"' in line, timeout=60))
        assert ready["status"]["state"] == "connected", ready
        yield PageDriver(driver)
        if driver.process.poll() is None:
            driver.send_line(json.dumps({"command": "quit"}))
            driver.wait(timeout=20)


def return_of(fun: str, minion: str) -> Any:
    def predicate(message: ReceivedMessage) -> bool:
        data = message.json()["data"]
        return message.subject.startswith("salt.events.salt.job.") and (
            data.get("fun") == fun and data.get("id") == minion and "return" in data
        )

    return predicate


@pytest.fixture(scope="module")
def jobs(engine_master: Any, nats_ws: NatsServer, page: PageDriver) -> dict[str, str]:
    """Run three jobs while the page is connected, and return their jids by name.

    ``ping`` targets both minions, ``state`` runs a state with a space in its name on
    web01, and ``check`` runs a command that fails on db01 only.
    """
    salt = engine_master.salt_cli(timeout=60)
    with NatsCollector(master_url(nats_ws), "salt.events.>") as collector:
        ping = salt.run("test.ping", minion_tgt="*")
        assert ping.returncode == 0, ping
        state = salt.run("state.single", "test.succeed_with_changes", "name=a b", minion_tgt=WEB)
        assert state.returncode == 0, state
        # `test` exits with 1 on db01, so the CLI exits non-zero as well.
        salt.run(
            "cmd.run",
            f'test "{{{{ grains.id }}}}" = {WEB}',
            "template=jinja",
            minion_tgt="*",
        )

        jids = {}
        for name, fun, minion in [
            ("ping", "test.ping", DB),
            ("state", "state.single", WEB),
            ("check", "cmd.run", DB),
        ]:
            (message,) = collector.wait_for(return_of(fun, minion), timeout=60)
            jids[name] = message.json()["data"]["jid"]
    return jids


def test_jobs_module_tests_pass(node: str) -> None:
    result = subprocess.run(
        [node, "--test"], cwd=BROWSER_EXAMPLE, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout


def test_ping_job_shows_both_minions(page: PageDriver, jobs: dict[str, str]) -> None:
    for minion in (WEB, DB):
        reply = page.ask("wait_minion", jid=jobs["ping"], minion=minion, status="success")
    job = reply["job"]

    assert job["title"] == "test.ping"
    assert job["state"] == "done"
    assert "2 of 2 returned" in job["meta"]
    assert {minion["id"] for minion in job["minions"]} == {WEB, DB}


def test_state_job_shows_success(page: PageDriver, jobs: dict[str, str]) -> None:
    reply = page.ask("wait_minion", jid=jobs["state"], minion=WEB, status="success")
    job = reply["job"]

    assert job["title"].startswith("state.single")
    assert "test.succeed_with_changes" in job["title"]
    assert job["minions"] == [{"id": WEB, "status": "success", "text": f"✓{WEB}success"}]


def test_failed_minion_is_marked(page: PageDriver, jobs: dict[str, str]) -> None:
    page.ask("wait_minion", jid=jobs["check"], minion=WEB, status="success")
    reply = page.ask("wait_minion", jid=jobs["check"], minion=DB, status="failed")
    job = reply["job"]
    (db_row,) = [row for row in job["minions"] if row["id"] == DB]

    assert job["state"] == "failed"
    assert "1 failed" in job["meta"]
    assert "retcode 1" in db_row["text"]


def test_event_filters(page: PageDriver, jobs: dict[str, str]) -> None:
    page.ask("wait_minion", jid=jobs["check"], minion=DB, status="failed")

    by_glob = page.ask("filter", tag="salt/job/*/ret/*")["rows"]
    by_minion = page.ask("filter", minion="db01")["rows"]
    by_function = page.ask("filter", fun="state.single")["rows"]
    page.ask("filter")

    glob_tags = {row["tag"] for row in by_glob}
    assert f"salt/job/{jobs['state']}/ret/{WEB}" in glob_tags
    assert f"salt/job/{jobs['ping']}/ret/{DB}" in glob_tags
    assert all(fnmatch.fnmatchcase(tag, "salt/job/*/ret/*") for tag in glob_tags)
    assert by_minion
    assert all(row["cells"][2] == DB for row in by_minion)
    assert {row["tag"] for row in by_function} >= {
        f"salt/job/{jobs['state']}/new",
        f"salt/job/{jobs['state']}/ret/{WEB}",
    }
    assert all(row["cells"][3] == "state.single" for row in by_function)


def test_detail_shows_state_return(page: PageDriver, jobs: dict[str, str]) -> None:
    page.ask("wait_minion", jid=jobs["state"], minion=WEB, status="success")

    reply = page.ask("select_minion", jid=jobs["state"], minion=WEB)
    detail = json.loads(reply["detail"])

    assert reply["title"] == f"salt/job/{jobs['state']}/ret/{WEB}"
    assert detail["subject"] == f"salt.events.salt.job.{jobs['state']}.ret.web01%2Eexample%2Ecom"
    assert detail["origin"] == WEB
    assert detail["master"] == "browser-master"
    assert detail["headers"]["Content-Type"] == "application/json"
    assert detail["data"]["success"] is True
    assert detail["data"]["return"][STATE_ID]["result"] is True


def test_screenshot(page: PageDriver, jobs: dict[str, str], tmp_path: Path) -> None:
    page.ask("wait_minion", jid=jobs["check"], minion=DB, status="failed")
    page.ask("filter", tag="salt/job/*")
    page.ask("select_minion", jid=jobs["state"], minion=WEB)
    path = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") == "1" else tmp_path / "browser.png"

    page.ask("screenshot", path=str(path))
    page.ask("filter")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000


def fetch(page_url: str, path: str) -> tuple[int, dict[str, str]]:
    """Send ``GET path`` as written, without URL normalization, and return status and headers."""
    address = urllib.parse.urlsplit(page_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/", 200),
        ("/decode.js", 200),
        ("/lib/msgpack.js", 200),
        ("/lib/other.js", 404),
        ("/vendor/nats-core.js", 200),
        ("/package.json", 404),
        ("/serve.js", 404),
        ("/../node/decode.js", 404),
        ("/node_modules/esbuild/package.json", 404),
    ],
)
def test_page_server_serves_only_page_files(page_url: str, path: str, status: int) -> None:
    code, headers = fetch(page_url, path)

    assert code == status
    assert "default-src 'self'" in headers["Content-Security-Policy"]


def websocket_handshake_status(port: int, origin: str) -> int:
    """Open a WebSocket handshake to nats-server with ``origin`` and return the HTTP status."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        connection.request(
            "GET",
            "/",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
                "Sec-WebSocket-Version": "13",
                "Origin": origin,
            },
        )
        return connection.getresponse().status
    finally:
        connection.close()


def test_websocket_accepts_only_page_origin(
    page_url: str, websocket_port: int, nats_ws: Any
) -> None:
    assert websocket_handshake_status(websocket_port, page_url.rstrip("/")) == 101
    assert websocket_handshake_status(websocket_port, "http://127.0.0.1:1") == 403


async def _try_as_viewer(url: str) -> list[str]:
    errors: list[str] = []

    async def on_error(error: Exception) -> None:
        errors.append(str(error))

    client = await nats.connect(url, error_cb=on_error, allow_reconnect=False)
    try:
        await client.subscribe("salt.events.>")
        await client.subscribe("salt.returns.>")
        await client.publish("salt.events.forged", b"{}")
        await client.flush(timeout=5)
        await asyncio.sleep(0.5)
    finally:
        await client.close()
    return errors


def test_viewer_user_is_read_only(nats_ws: NatsServer) -> None:
    url = f"nats://{VIEWER_USER}:{VIEWER_PASSWORD}@{LOOPBACK}:{nats_ws.port}"

    errors = asyncio.run(_try_as_viewer(url))

    assert any('subscription to "salt.returns.>"' in error for error in errors), errors
    assert any('publish to "salt.events.forged"' in error for error in errors), errors
    assert not any("salt.events.>" in error for error in errors), errors
