"""Authentication and TLS against real nats-servers, one server per mode.

Every salt-nats component connects with ``connect_options()``, so most modes are
tested by connecting with it directly: a quick check per mode that an event
published this way reaches a subscriber, and that wrong credentials fail with a
message that explains why. ``NatsSupervisor`` tests show the engine's retries and
warnings in-process.

One salt-master runs an engine instance per mode that a real master adds something
to: a password file under the recommended permissions (in core and in JetStream
mode), a token from an ``sdb://`` URI, a creds file, mutual TLS, ``tls_verify: false``
and a wrong password. The tests then search its log and status files for every
secret that the module generated.

The certificates, NKEYs and JWTs are generated here (``tests/support/pki.py`` and
``tests/support/nkeys_jwt.py``). Every server listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
import salt.config
from nats.aio.client import Client

from salt_nats.config import ConfigError, EngineSettings, parse_engine_settings
from salt_nats.connection import NatsSupervisor, connect_options
from salt_nats.secrets import resolve_secrets
from salt_nats.status import Stats
from tests.support.nats_server import NatsServer
from tests.support.nkeys_jwt import OperatorSetup, make_operator_setup, make_user_nkey
from tests.support.pki import SERVER_NAME, Pki, make_pki

pytestmark = pytest.mark.integration

SUBJECT_PREFIX = "salt.events"
CHECK_SUBJECT = f"{SUBJECT_PREFIX}.auth.check"
EVENT_TAG = "salt-nats-test/auth/check"
SDB_PROFILE = "nats_secrets"
WAIT_TIMEOUT = 15.0

# The permissions that docs/security.md recommends for the engine's user, with the
# micro service on: publish events (and JetStream API requests in jetstream mode),
# subscribe to replies and to the micro service's subjects, and respond to the
# requests that the micro service receives.
ENGINE_SUBSCRIBE = '["_INBOX.>", "$SRV.>", "salt-nats.status.>"]'
ENGINE_PERMISSIONS = (
    f'{{ publish: {{ allow: ["salt.events.>"] }}, subscribe: {{ allow: {ENGINE_SUBSCRIBE} }}, '
    "allow_responses: true }"
)
ENGINE_JETSTREAM_PERMISSIONS = (
    f'{{ publish: {{ allow: ["salt.events.>", "$JS.API.>"] }}, '
    f"subscribe: {{ allow: {ENGINE_SUBSCRIBE} }}, allow_responses: true }}"
)


# --- secrets, files and servers -------------------------------------------------------


@dataclass(frozen=True)
class AuthMaterial:
    """Every secret of this module, and the files that contain some of them."""

    password: str
    reader_password: str
    wrong_password: str
    token: str
    wrong_token: str
    password_file: Path
    token_file: Path
    sdb_file: Path
    nkey_seed: str
    nkey_public_key: str
    nkey_seed_file: Path
    unknown_nkey_seed: str
    operator: OperatorSetup
    pki: Pki

    def all_secrets(self) -> dict[str, str]:
        """Return each secret by a label that a failed assertion can show instead."""
        found = {
            "password": self.password,
            "reader_password": self.reader_password,
            "wrong_password": self.wrong_password,
            "token": self.token,
            "wrong_token": self.wrong_token,
            "nkey_seed": self.nkey_seed,
            "unknown_nkey_seed": self.unknown_nkey_seed,
        }
        for name, user in self.operator.users.items():
            found[f"{name}_user_jwt"] = user.jwt
            found[f"{name}_user_seed"] = user.nkey.seed
        for index, key_text in enumerate(self.pki.private_keys):
            # A line of the key's base64 body; the first line starts with a fixed header.
            found[f"private_key_{index}"] = key_text.splitlines()[2]
        return found


def _secret_file(path: Path, text: str) -> Path:
    path.touch(mode=0o600)
    path.write_text(text + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> AuthMaterial:
    directory = tmp_path_factory.mktemp("auth")
    password = secrets.token_urlsafe(18)
    token = secrets.token_urlsafe(24)
    nkey = make_user_nkey()
    return AuthMaterial(
        password=password,
        reader_password=secrets.token_urlsafe(18),
        wrong_password=secrets.token_urlsafe(18),
        token=token,
        wrong_token=secrets.token_urlsafe(24),
        password_file=_secret_file(directory / "engine.password", password),
        token_file=_secret_file(directory / "engine.token", token),
        sdb_file=_secret_file(directory / "sdb.yaml", f"token: {token}"),
        nkey_seed=nkey.seed,
        nkey_public_key=nkey.public_key,
        nkey_seed_file=_secret_file(directory / "engine.nk", nkey.seed),
        unknown_nkey_seed=make_user_nkey().seed,
        operator=make_operator_setup(directory / "operator", ("engine", "reader")),
        pki=make_pki(directory / "pki"),
    )


def _server_configs(material: AuthMaterial) -> dict[str, str]:
    pki = material.pki
    server_tls = f'cert_file: "{pki.server.cert_file}", key_file: "{pki.server.key_file}"'
    return {
        "users": (
            "authorization {\n"
            "  users: [\n"
            f'    {{ user: "engine", password: "{material.password}", '
            f"permissions: {ENGINE_PERMISSIONS} }}\n"
            f'    {{ user: "engine-js", password: "{material.password}", '
            f"permissions: {ENGINE_JETSTREAM_PERMISSIONS} }}\n"
            f'    {{ user: "reader", password: "{material.reader_password}" }}\n'
            f'    {{ nkey: "{material.nkey_public_key}" }}\n'
            "  ]\n"
            "}"
        ),
        "token": f'authorization {{ token: "{material.token}" }}',
        "operator": material.operator.server_config(),
        "tls": f"tls {{ {server_tls} }}",
        "mtls": f'tls {{ {server_tls}, ca_file: "{pki.ca_file}", verify: true }}',
        "handshake_first": f"tls {{ {server_tls}, handshake_first: true }}",
        "self_signed": (
            f'tls {{ cert_file: "{pki.self_signed_server.cert_file}", '
            f'key_file: "{pki.self_signed_server.key_file}" }}'
        ),
    }


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, material: AuthMaterial
) -> Iterator[dict[str, NatsServer]]:
    """One started nats-server per auth mode, by name."""
    directory = tmp_path_factory.mktemp("auth-servers")
    started: dict[str, NatsServer] = {}
    try:
        for name, config in _server_configs(material).items():
            jetstream = name == "users"
            server = NatsServer(directory, name=name, jetstream=jetstream, extra_config=config)
            server.start()
            started[name] = server
        yield started
    finally:
        for server in started.values():
            server.stop()


def _tls(material: AuthMaterial, **extra: Any) -> dict[str, Any]:
    return {"tls_ca_file": str(material.pki.ca_file), "tls_server_name": SERVER_NAME, **extra}


def _client_cert(material: AuthMaterial) -> dict[str, str]:
    return {
        "tls_cert_file": str(material.pki.client.cert_file),
        "tls_key_file": str(material.pki.client.key_file),
    }


def reader_options(server_name: str, material: AuthMaterial) -> dict[str, Any]:
    """Return the options of a subscriber that may read everything on ``server_name``."""
    readers: dict[str, Callable[[], dict[str, Any]]] = {
        "users": lambda: {"user": "reader", "password": material.reader_password},
        "token": lambda: {"token": material.token},
        "operator": lambda: {"creds": str(material.operator.users["reader"].creds_file)},
        "tls": lambda: _tls(material),
        "mtls": lambda: _tls(material, **_client_cert(material)),
        "handshake_first": lambda: _tls(material, tls_handshake_first=True),
        "self_signed": lambda: {"tls_verify": False},
    }
    return readers[server_name]()


# --- helpers --------------------------------------------------------------------------


def build_settings(server: NatsServer, options: dict[str, Any], **extra: Any) -> EngineSettings:
    """Parse engine options for ``server`` and resolve their secrets, as the engine does."""
    settings = parse_engine_settings({"servers": [server.url], **options, **extra})
    return resolve_secrets(settings, None)


async def connect_once(settings: EngineSettings, name: str) -> Client:
    """Connect with the options every component uses, with one attempt and no retries."""
    options = connect_options(settings, name)
    options.update(allow_reconnect=False, max_reconnect_attempts=1, connect_timeout=3)

    async def ignore_error(exc: Exception) -> None:
        pass  # the exception is raised from connect() as well

    return await nats.connect(**options, error_cb=ignore_error)


async def publish_and_receive(sender: EngineSettings, reader: EngineSettings) -> bytes:
    """Publish one message with ``sender`` and return what ``reader`` received."""
    reader_client = await connect_once(reader, "auth-test-reader")
    try:
        subscription = await reader_client.subscribe(CHECK_SUBJECT)
        await reader_client.flush()
        sender_client = await connect_once(sender, "auth-test-sender")
        try:
            payload = secrets.token_hex(8).encode()
            await sender_client.publish(CHECK_SUBJECT, payload)
            await sender_client.flush()
        finally:
            await sender_client.close()
        message = await subscription.next_msg(timeout=5)
        assert message.data == payload
        return message.data
    finally:
        await reader_client.close()


def connection_info(server: NatsServer, name: str) -> dict[str, Any]:
    """Return the server's /connz entry of the connection named ``name``."""
    connections = server.monitor("connz?auth=true&limit=1024")["connections"] or []
    matches = [entry for entry in connections if entry.get("name") == name]
    assert matches, f"no connection named {name!r} on {server.name}: {connections}"
    return matches[0]


def assert_no_secret(text: str, material: AuthMaterial, where: str) -> None:
    for label, secret in material.all_secrets().items():
        assert secret not in text, f"the {label} appears in {where}"


# --- every mode connects and delivers ------------------------------------------------

# Mode id -> (server name, engine options).
MODES: dict[str, tuple[str, Callable[[AuthMaterial], dict[str, Any]]]] = {
    "user-password": ("users", lambda m: {"user": "engine", "password": m.password}),
    "password-file": ("users", lambda m: {"user": "engine", "password_file": str(m.password_file)}),
    "password-file-uri": (
        "users",
        lambda m: {"user": "engine", "password": f"file://{m.password_file}"},
    ),
    "token": ("token", lambda m: {"token": m.token}),
    "token-file": ("token", lambda m: {"token_file": str(m.token_file)}),
    "nkey-seed-file": ("users", lambda m: {"nkeys_seed": str(m.nkey_seed_file)}),
    "nkey-seed-inline": ("users", lambda m: {"nkeys_seed": m.nkey_seed}),
    "creds-file": ("operator", lambda m: {"creds": str(m.operator.users["engine"].creds_file)}),
    "creds-text": ("operator", lambda m: {"creds": m.operator.users["engine"].creds_text}),
    "tls-ca-server-name": ("tls", lambda m: _tls(m)),
    "mutual-tls": ("mtls", lambda m: _tls(m, **_client_cert(m))),
    "tls-handshake-first": ("handshake_first", lambda m: _tls(m, tls_handshake_first=True)),
    "tls-verify-false": ("self_signed", lambda m: {"tls_verify": False}),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_mode_connects_and_delivers(
    mode: str, material: AuthMaterial, servers: dict[str, NatsServer]
) -> None:
    server_name, options = MODES[mode]
    server = servers[server_name]
    sender = build_settings(server, options(material))
    reader = build_settings(server, reader_options(server_name, material))

    asyncio.run(publish_and_receive(sender, reader))


@pytest.mark.parametrize("mode", ["tls-ca-server-name", "mutual-tls", "tls-handshake-first"])
def test_tls_mode_uses_tls(
    mode: str, material: AuthMaterial, servers: dict[str, NatsServer]
) -> None:
    server_name, options = MODES[mode]
    server = servers[server_name]
    settings = build_settings(server, options(material))
    name = f"auth-test-{mode}"

    async def connect_and_inspect() -> dict[str, Any]:
        client = await connect_once(settings, name)
        try:
            return connection_info(server, name)
        finally:
            await client.close()

    info = asyncio.run(connect_and_inspect())

    assert info.get("tls_version", "").startswith("1.")
    if mode == "mutual-tls":
        assert info.get("tls_peer_certs"), f"the server saw no client certificate: {info}"


# --- wrong credentials ---------------------------------------------------------------

# Case id -> (server name, engine options, text expected in the client's error or,
# with a "server:" prefix, in the server's log).
REJECTED: dict[str, tuple[str, Callable[[AuthMaterial], dict[str, Any]], str]] = {
    "wrong-password": (
        "users",
        lambda m: {"user": "engine", "password": m.wrong_password},
        "authorization violation",
    ),
    "unknown-nkey": (
        "users",
        lambda m: {"nkeys_seed": m.unknown_nkey_seed},
        "authorization violation",
    ),
    "wrong-token": ("token", lambda m: {"token": m.wrong_token}, "authorization violation"),
    "creds-of-unknown-account": (
        "operator",
        lambda m: {"creds": str(m.operator.users["stranger"].creds_file)},
        "authorization violation",
    ),
    "no-credentials": ("operator", lambda m: {}, "authorization violation"),
    "server-cert-untrusted": (
        "tls",
        lambda m: {"tls_server_name": SERVER_NAME},
        "certificate verify failed",
    ),
    "server-name-missing": (
        "tls",
        lambda m: {"tls_ca_file": str(m.pki.ca_file)},
        "ip address mismatch",
    ),
    "client-cert-missing": ("mtls", lambda m: _tls(m), "server:didn't provide a certificate"),
    "client-cert-untrusted": (
        "mtls",
        lambda m: _tls(
            m,
            tls_cert_file=str(m.pki.other_ca_client.cert_file),
            tls_key_file=str(m.pki.other_ca_client.key_file),
        ),
        "server:certificate signed by unknown authority",
    ),
    "handshake-first-not-set": ("handshake_first", lambda m: _tls(m), "expecting info"),
    "self-signed-verified": ("self_signed", lambda m: {}, "self-signed certificate"),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_wrong_credentials_rejected(
    case: str, material: AuthMaterial, servers: dict[str, NatsServer]
) -> None:
    server_name, options, expected = REJECTED[case]
    server = servers[server_name]
    settings = build_settings(server, options(material))
    log_start = len(server.read_log())

    # The error types differ by mode: nats-py's errors, ssl errors and OSError.
    with pytest.raises(Exception) as caught:
        asyncio.run(connect_once(settings, f"auth-test-{case}"))

    message = f"{type(caught.value).__name__}: {caught.value}"
    assert_no_secret(message, material, "the connect error")
    if expected.startswith("server:"):
        expected_line = expected.removeprefix("server:")
        deadline = time.monotonic() + 5
        while expected_line not in server.read_log()[log_start:] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert expected_line in server.read_log()[log_start:]
    else:
        assert expected in message.lower()


# --- the engine's supervisor ---------------------------------------------------------


async def run_supervisor(
    settings: EngineSettings, until: Callable[[Stats], bool], timeout: float
) -> tuple[Stats, bool]:
    """Run a supervisor until ``until(stats)`` returns True or ``timeout`` seconds pass.

    Returns its stats and whether its task was still running, which it must be
    until close() is called.
    """
    stats = Stats()
    supervisor = NatsSupervisor(settings, stats, "auth-test-supervisor", on_ready=lambda: None)
    task = asyncio.create_task(supervisor.run())
    deadline = time.monotonic() + timeout
    while not until(stats) and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.05)
    still_running = not task.done()
    await supervisor.close(flush_timeout=0.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return stats, still_running


def test_supervisor_warns_tls_verify_false(
    material: AuthMaterial, servers: dict[str, NatsServer], caplog: pytest.LogCaptureFixture
) -> None:
    settings = build_settings(servers["self_signed"], {"tls_verify": False}, name="insecure")
    caplog.set_level(logging.INFO, logger="salt_nats.connection")

    stats, _ = asyncio.run(run_supervisor(settings, lambda stats: stats.nats_connects > 0, 10))

    assert stats.nats_connects == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("salt-nats insecure: tls_verify is false" in line for line in warnings), warnings


def test_supervisor_retries_wrong_password(
    material: AuthMaterial, servers: dict[str, NatsServer], caplog: pytest.LogCaptureFixture
) -> None:
    settings = build_settings(
        servers["users"],
        {"user": "engine", "password": material.wrong_password},
        name="badpass",
        reconnect_time_wait=0.1,
        reconnect_max_wait=0.5,
    )
    caplog.set_level(logging.INFO, logger="salt_nats.connection")

    stats, still_running = asyncio.run(
        run_supervisor(settings, lambda stats: stats.nats_errors >= 3, 10)
    )

    assert still_running
    assert stats.nats_errors >= 3
    assert stats.nats_connects == 0
    lines = [r.getMessage() for r in caplog.records]
    violations = [line for line in lines if "Authorization Violation" in line]
    assert len(violations) == 1, "repeated errors are rate-limited to one line"
    assert "the server rejected the user credentials" in violations[0]
    assert_no_secret("\n".join(lines), material, "the supervisor's log")


def test_supervisor_refuses_plain_text_when_tls_wanted(
    material: AuthMaterial, servers: dict[str, NatsServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = servers["users"]  # no TLS on this server
    settings = build_settings(
        server,
        {"user": "engine", "password": material.password},
        name="plaintext",
        servers=[server.url.replace("nats://", "tls://")],
        reconnect_time_wait=0.1,
        reconnect_max_wait=0.5,
    )
    caplog.set_level(logging.INFO, logger="salt_nats.connection")

    stats, still_running = asyncio.run(
        run_supervisor(settings, lambda stats: stats.nats_errors >= 2, 10)
    )

    assert still_running
    assert stats.nats_connects == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("does not require TLS" in line for line in errors), errors


# --- sdb ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdb_opts(material: AuthMaterial, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Minion opts with a YAML sdb profile that contains the token."""
    directory = tmp_path_factory.mktemp("sdb-opts")
    opts = salt.config.minion_config(None)
    opts.update(
        {
            "cachedir": str(directory / "cache"),
            "file_client": "local",
            SDB_PROFILE: {"driver": "yaml", "files": [str(material.sdb_file)]},
        }
    )
    return opts


def test_sdb_token_resolved(
    material: AuthMaterial, servers: dict[str, NatsServer], sdb_opts: dict[str, Any]
) -> None:
    server = servers["token"]
    settings = parse_engine_settings(
        {"servers": [server.url], "token": f"sdb://{SDB_PROFILE}/token"}
    )

    resolved = resolve_secrets(settings, sdb_opts)

    assert resolved.token == material.token
    asyncio.run(publish_and_receive(resolved, build_settings(server, {"token": material.token})))


def test_sdb_unknown_profile_rejected(sdb_opts: dict[str, Any]) -> None:
    settings = parse_engine_settings({"token": "sdb://no_such_profile/token"})

    with pytest.raises(ConfigError) as caught:
        resolve_secrets(settings, sdb_opts)

    assert caught.value.key == "token"
    assert "sdb://no_such_profile/token" in str(caught.value)


# --- a real salt-master with one engine instance per mode --------------------------------

# Instance name -> server name. The instances whose credentials are right.
ENGINE_SERVERS = {
    "auth-password": "users",
    "auth-jetstream": "users",
    "auth-token-sdb": "token",
    "auth-creds": "operator",
    "auth-mtls": "mtls",
    "auth-insecure": "self_signed",
}


@pytest.fixture(scope="module")
def auth_master(servers: dict[str, NatsServer], material: AuthMaterial, make_master: Any) -> Any:
    """A master with an engine instance per entry of ENGINE_SERVERS, and one with a wrong password.

    ``servers`` comes first, so that the master stops before the servers do.
    """
    instance_options = {
        "auth-password": {"user": "engine", "password_file": str(material.password_file)},
        "auth-jetstream": {
            "user": "engine-js",
            "password_file": str(material.password_file),
            "mode": "jetstream",
        },
        # The master resolves sdb:// URIs in its config when it loads the file.
        "auth-token-sdb": {"token": f"sdb://{SDB_PROFILE}/token"},
        "auth-creds": {"creds": str(material.operator.users["engine"].creds_file)},
        "auth-mtls": _tls(material, **_client_cert(material)),
        "auth-insecure": {"tls_verify": False},
    }
    engines = [
        {
            name: {
                "engine_module": "nats",
                "servers": [servers[ENGINE_SERVERS[name]].url],
                **options,
            }
        }
        for name, options in instance_options.items()
    ]
    engines.append(
        {
            "auth-badpass": {
                "engine_module": "nats",
                "servers": [servers["users"].url],
                "user": "engine",
                "password": material.wrong_password,
                "reconnect_time_wait": 0.2,
                "heartbeat_interval": 1,
            }
        }
    )
    extra_config = {
        "engines": engines,
        SDB_PROFILE: {"driver": "yaml", "files": [str(material.sdb_file)]},
    }
    return make_master(extra_config=extra_config, master_id="auth-master")


@pytest.fixture(scope="module")
def connected_master(auth_master: Any, daemon_log: Any) -> Any:
    """The master once every instance with good credentials has connected."""
    master_log = daemon_log(auth_master)
    deadline = time.monotonic() + 30
    for name in ENGINE_SERVERS:
        remaining = max(deadline - time.monotonic(), 0.1)
        master_log.wait_for(f"salt-nats {name}: connected to NATS server", timeout=remaining)
    return auth_master


class Subscribers:
    """Subscriptions to CHECK_SUBJECT's prefix on several servers, on one background loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.clients: list[Client] = []
        self.received: dict[str, list[Any]] = {}

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = WAIT_TIMEOUT) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def subscribe(self, label: str, settings: EngineSettings, subject: str) -> None:
        async def start() -> None:
            client = await connect_once(settings, f"auth-test-{label}")
            self.clients.append(client)
            self.received[label] = []

            async def store(message: Any) -> None:
                self.received[label].append(message)

            await client.subscribe(subject, cb=store)
            await client.flush()

        self.run(start())

    def wait_for_all(self, timeout: float = WAIT_TIMEOUT) -> dict[str, int]:
        """Wait until every subscription has a message; return the count of each."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.received.values()):
                break
            time.sleep(0.1)
        return {label: len(messages) for label, messages in self.received.items()}

    def close(self) -> None:
        async def close_all() -> None:
            for client in self.clients:
                await client.close()

        self.run(close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def test_engine_connects_in_each_mode(connected_master: Any, daemon_log: Any) -> None:
    text = daemon_log(connected_master).read()

    for name in ENGINE_SERVERS:
        assert f"salt-nats {name}: connected to NATS server" in text
    assert "salt-nats auth-badpass: connected" not in text


def test_engine_event_reaches_each_server(
    connected_master: Any,
    material: AuthMaterial,
    servers: dict[str, NatsServer],
    fire_master_event: Any,
) -> None:
    subscribers = Subscribers()
    try:
        for name, server_name in ENGINE_SERVERS.items():
            reader = build_settings(servers[server_name], reader_options(server_name, material))
            subscribers.subscribe(name, reader, f"{SUBJECT_PREFIX}.salt-nats-test.auth.>")

        fire_master_event(connected_master, EVENT_TAG, {"check": "auth"})
        counts = subscribers.wait_for_all()
    finally:
        subscribers.close()

    assert all(counts.values()), f"events received per instance: {counts}"
    for name, messages in subscribers.received.items():
        assert json.loads(messages[0].data)["tag"] == EVENT_TAG, name


@pytest.mark.parametrize("instance", ["auth-password", "auth-jetstream"])
def test_engine_permissions_suffice(
    instance: str,
    connected_master: Any,
    daemon_log: Any,
    material: AuthMaterial,
    servers: dict[str, NatsServer],
) -> None:
    reader = build_settings(servers["users"], reader_options("users", material))
    subject = f"salt-nats.status.auth-master.{instance}"

    async def request_status() -> dict[str, Any]:
        client = await connect_once(reader, "auth-test-status")
        try:
            reply = await client.request(subject, b"", timeout=5)
        finally:
            await client.close()
        return json.loads(reply.data)

    # The micro service replies only if the user may subscribe to its subject and
    # publish the response.
    report = asyncio.run(request_status())

    assert report["instance"] == instance
    master_log = daemon_log(connected_master)
    if instance == "auth-jetstream":
        master_log.wait_for(rf"salt-nats {instance}: (created|using) JetStream stream")
    assert master_log.lines_matching(rf"salt-nats {instance}:.*[Pp]ermission") == []


def test_engine_warns_tls_verify_false(connected_master: Any, daemon_log: Any) -> None:
    lines = daemon_log(connected_master).lines_matching(
        r"\[WARNING \].*salt-nats auth-insecure: tls_verify is false"
    )

    assert len(lines) == 1


def test_engine_wrong_password_keeps_retrying(
    connected_master: Any, daemon_log: Any, servers: dict[str, NatsServer]
) -> None:
    master_log = daemon_log(connected_master)
    lines = master_log.wait_for(r"salt-nats auth-badpass: NATS error: .*Authorization Violation")
    assert "the server rejected the user credentials" in lines[0]

    # The engine process stays up: it keeps trying, and keeps writing heartbeats.
    status_file = Path(connected_master.config["cachedir"]) / "salt-nats" / "auth-badpass.json"
    first = json.loads(status_file.read_text(encoding="utf-8"))
    deadline = time.monotonic() + 10
    latest = first
    while latest["heartbeat_time"] == first["heartbeat_time"] and time.monotonic() < deadline:
        time.sleep(0.2)
        latest = json.loads(status_file.read_text(encoding="utf-8"))

    assert latest["heartbeat_time"] > first["heartbeat_time"]
    assert latest["state"] not in ("connected", "failed")
    assert latest["nats_errors"] >= 2
    server_errors = servers["users"].read_log().count('authentication error - User "engine"')
    assert server_errors >= 2
    assert "could not be started" not in master_log.read()


def test_no_secret_in_master_log_or_status(
    connected_master: Any, daemon_log: Any, material: AuthMaterial
) -> None:
    status_dir = Path(connected_master.config["cachedir"]) / "salt-nats"
    status_files = sorted(status_dir.glob("*.json"))

    assert {path.stem for path in status_files} >= {*ENGINE_SERVERS, "auth-badpass"}
    assert_no_secret(daemon_log(connected_master).read(), material, "the master log")
    for path in status_files:
        assert_no_secret(path.read_text(encoding="utf-8"), material, str(path))
