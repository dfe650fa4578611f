"""The ``salt-nats`` command and the Python example against a real nats-server and Salt.

One salt-master with the engine in JetStream mode and one minion serve the whole
module. Each test starts ``salt-nats`` as a subprocess, as a user would. A ``tail``
prints "Listening on ..." to stderr once it has subscribed, and only then do the
tests run the Salt job whose events it must print.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import nats
import pytest
import salt.client
import salt.utils.jid
from nats.js.api import StreamConfig

from salt_nats.codec import EventEncoder, pack_data, unquote_id
from salt_nats.consumer import ReplayRange, replay_messages
from salt_nats.subjects import tag_from_message
from tests.support.nats_server import get_free_port

pytestmark = pytest.mark.integration

MINION_ID = "web01.example.com"
MASTER_ID = "cli-master"
INSTANCE = "cli"
ROOT = Path(__file__).resolve().parents[2]
SALT_NATS = str(Path(sys.executable).parent / "salt-nats")
EXAMPLE = str(ROOT / "examples" / "python" / "subscriber.py")


def cli_environment() -> dict[str, str]:
    """Return this process's environment without NATS_* variables and NO_COLOR."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("NATS_") and name != "NO_COLOR"
    }


class CliProcess:
    """A ``salt-nats`` (or example) subprocess whose stdout goes to a file."""

    def __init__(self, command: list[str], output: Path) -> None:
        self.output = output
        self._stdout = output.open("w")
        self.process = subprocess.Popen(
            command,
            stdout=self._stdout,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_environment(),
        )
        self.stderr_lines: list[str] = []
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line)
            if line.startswith("Listening on"):
                self._listening.set()

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def wait_until_listening(self, timeout: float = 20) -> None:
        if not self._listening.wait(timeout):
            self.process.kill()
            self.finish()
            raise AssertionError(f"{self.process.args} did not subscribe: {self.stderr}")

    def finish(self, timeout: float = 40) -> tuple[int, str, str]:
        """Wait for the process to exit; return its exit status, stdout and stderr."""
        try:
            returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise
        finally:
            self._reader.join(5)
            self._stdout.close()
        return returncode, self.output.read_text(), self.stderr


@pytest.fixture
def start_cli(tmp_path: Path) -> Any:
    """Return ``start_cli(*args)``, which starts ``salt-nats`` with ``args``."""
    processes: list[CliProcess] = []

    def _start(*args: str, program: list[str] | None = None) -> CliProcess:
        command = [*(program or [SALT_NATS]), *args]
        process = CliProcess(command, tmp_path / f"stdout-{len(processes)}.txt")
        processes.append(process)
        return process

    yield _start

    for process in processes:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait(5)


def run_cli(*args: str, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SALT_NATS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_environment(),
        check=False,
    )


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def cli_master(make_master: Any, nats_server_module: Any, daemon_log: Any) -> Any:
    master = make_master(
        engine_config={
            "servers": [nats_server_module.url],
            "name": INSTANCE,
            "mode": "jetstream",
        },
        master_id=MASTER_ID,
    )
    daemon_log(master).wait_for(r"(created|using) JetStream stream SALT_EVENTS", timeout=30)
    return master


@pytest.fixture(scope="module")
def cli_minion(make_minion: Any, cli_master: Any) -> Any:
    return make_minion(cli_master, MINION_ID)


@pytest.fixture(scope="module")
def server_url(nats_server_module: Any, cli_minion: Any) -> str:
    """The URL of the nats-server that the engine publishes to, once Salt is up."""
    return nats_server_module.url


@pytest.fixture(scope="module")
def local_client(cli_master: Any) -> Any:
    """Salt's LocalClient for the master, to run jobs with a jid chosen in advance."""
    client = salt.client.LocalClient(mopts=dict(cli_master.config))
    yield client
    client.destroy()


def ping(cli_master: Any) -> None:
    result = cli_master.salt_cli(timeout=30).run("test.ping", minion_tgt=MINION_ID)
    assert result.returncode == 0, result


def ping_with_jid(local_client: Any, cli_master: Any) -> str:
    jid = salt.utils.jid.gen_jid(cli_master.config)
    returns = local_client.cmd(MINION_ID, "test.ping", jid=jid, timeout=30)
    assert returns == {MINION_ID: True}
    return jid


# --- tail -----------------------------------------------------------------------------


def test_tail_tag_glob_json(server_url: str, cli_master: Any, start_cli: Any) -> None:
    tail = start_cli(
        "tail", "-s", server_url, "--json", "--count", "1", "--timeout", "30",
        "--tag", "salt/job/*/ret/*",
    )  # fmt: skip
    tail.wait_until_listening()
    ping(cli_master)
    returncode, stdout, stderr = tail.finish()

    assert returncode == 0, stderr
    assert "Listening on salt.events.salt.job.> at " in stderr
    (event,) = json_lines(stdout)
    jid = event["data"]["jid"]
    assert event["tag"] == f"salt/job/{jid}/ret/{MINION_ID}"
    assert tag_from_message(event["subject"], event["headers"]) == event["tag"]
    assert event["data"]["fun"] == "test.ping"
    assert event["data"]["return"] is True
    assert unquote_id(event["headers"]["Salt-Origin"]) == MINION_ID
    assert event["headers"]["Salt-Master"] == MASTER_ID


def test_tail_minion_and_function(server_url: str, cli_master: Any, start_cli: Any) -> None:
    matching = start_cli(
        "tail", "-s", server_url, "--json", "--count", "1", "--timeout", "30",
        "--minion", MINION_ID, "--function", "test.ping",
    )  # fmt: skip
    other_minion = start_cli(
        "tail", "-s", server_url, "--json", "--timeout", "5", "--minion", "db01.example.com"
    )
    matching.wait_until_listening()
    other_minion.wait_until_listening()
    ping(cli_master)
    returncode, stdout, stderr = matching.finish()
    other_returncode, other_stdout, other_stderr = other_minion.finish()

    assert returncode == 0, stderr
    (event,) = json_lines(stdout)
    assert event["tag"].startswith("salt/job/")
    assert event["tag"].endswith(f"/ret/{MINION_ID}")
    assert event["data"]["fun"] == "test.ping"
    assert other_returncode == 0, other_stderr
    assert other_stdout == ""


def test_tail_function_glob_text(server_url: str, cli_master: Any, start_cli: Any) -> None:
    tail = start_cli(
        "tail", "-s", server_url, "--count", "1", "--timeout", "40",
        "--tag", "salt/job/*/ret/*", "--function", "state.*",
    )  # fmt: skip
    tail.wait_until_listening()
    result = cli_master.salt_cli(timeout=60).run(
        "state.single", "test.succeed_with_changes", "name=cli text", minion_tgt=MINION_ID
    )
    assert result.returncode == 0, result
    returncode, stdout, stderr = tail.finish()

    assert returncode == 0, stderr
    tag, body = stdout.split("\t", 1)
    assert tag.startswith("salt/job/")
    assert tag.endswith(f"/ret/{MINION_ID}")
    assert body.startswith("{\n    ")
    data = json.loads(body)
    assert data["fun"] == "state.single"
    assert "\033[" not in stdout


def test_tail_jid(server_url: str, cli_master: Any, local_client: Any, start_cli: Any) -> None:
    jid = salt.utils.jid.gen_jid(cli_master.config)
    tail = start_cli(
        "tail", "-s", server_url, "--json", "--count", "2", "--timeout", "30", "--jid", jid
    )
    tail.wait_until_listening()
    assert local_client.cmd(MINION_ID, "test.ping", jid=jid, timeout=30) == {MINION_ID: True}
    returncode, stdout, stderr = tail.finish()

    assert returncode == 0, stderr
    assert f"salt.events.salt.job.{jid}.>" in stderr
    tags = [event["tag"] for event in json_lines(stdout)]
    assert tags == [f"salt/job/{jid}/new", f"salt/job/{jid}/ret/{MINION_ID}"]


def test_tail_count_not_reached(server_url: str) -> None:
    result = run_cli(
        "tail", "-s", server_url, "--count", "1", "--timeout", "1", "--tag", "no/such/tag"
    )

    assert result.returncode == 1
    assert "timed out after 1 s with 0 of 1 events" in result.stderr
    assert result.stdout == ""


def test_example_subscriber(server_url: str, cli_master: Any, start_cli: Any) -> None:
    subscriber = start_cli(
        server_url,
        "salt.events.salt.job.*.ret.>",
        "1",
        program=[sys.executable, EXAMPLE],
    )
    subscriber.wait_until_listening()
    ping(cli_master)
    returncode, stdout, stderr = subscriber.finish()

    assert returncode == 0, stderr
    tag, body = stdout.rstrip("\n").split("\t", 1)
    assert tag.startswith("salt/job/")
    assert tag.endswith(f"/ret/{MINION_ID}")
    assert json.loads(body)["return"] is True


# --- replay ---------------------------------------------------------------------------


def test_replay_filters_in_order(server_url: str, cli_master: Any, local_client: Any) -> None:
    first_jid = ping_with_jid(local_client, cli_master)
    second_jid = ping_with_jid(local_client, cli_master)

    result = run_cli(
        "replay", "-s", server_url, "--json", "--since", "10m",
        "--tag", "salt/job/*/ret/*", "--minion", MINION_ID, "--function", "test.ping",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    sequences = [event["stream_seq"] for event in events]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == len(sequences)
    jids = [event["data"]["jid"] for event in events]
    assert first_jid in jids
    assert second_jid in jids
    assert jids.index(first_jid) < jids.index(second_jid)
    assert all(event["tag"].endswith(f"/ret/{MINION_ID}") for event in events)
    assert all(event["data"]["fun"] == "test.ping" for event in events)


def test_replay_jid_text(server_url: str, cli_master: Any, local_client: Any) -> None:
    jid = ping_with_jid(local_client, cli_master)

    result = run_cli("replay", "-s", server_url, "--jid", jid)

    assert result.returncode == 0, result.stderr
    tag_lines = [line for line in result.stdout.splitlines() if not line.startswith((" ", "}"))]
    assert [line.split("\t")[0] for line in tag_lines] == [
        f"salt/job/{jid}/new",
        f"salt/job/{jid}/ret/{MINION_ID}",
    ]


def test_replay_sequence_range(server_url: str, cli_master: Any) -> None:
    ping(cli_master)  # makes sure that the stream has at least four events

    result = run_cli("replay", "-s", server_url, "--json", "--start-seq", "2", "--end-seq", "4")

    assert result.returncode == 0, result.stderr
    assert [event["stream_seq"] for event in json_lines(result.stdout)] == [2, 3, 4]


def test_replay_whole_stream_ends(server_url: str, cli_master: Any) -> None:
    ping(cli_master)
    before = stream_last_seq(server_url, "SALT_EVENTS")

    result = run_cli("replay", "-s", server_url, "--json")

    after = stream_last_seq(server_url, "SALT_EVENTS")
    assert result.returncode == 0, result.stderr
    sequences = [event["stream_seq"] for event in json_lines(result.stdout)]
    assert sequences[0] == 1
    assert sequences == list(range(1, len(sequences) + 1))
    assert before <= sequences[-1] <= after


def stream_last_seq(url: str, stream: str) -> int:
    async def read() -> int:
        client = await nats.connect(url)
        try:
            return (await client.jetstream().stream_info(stream)).state.last_seq
        finally:
            await client.close()

    return asyncio.run(read())


# --- replay_messages on a stream of synthetic events ------------------------------------

SYNTHETIC_PREFIX = "synthetic.events"
SYNTHETIC_STREAM = "SYNTHETIC"


async def publish_synthetic(client: Any, tags: list[str], start: int = 0) -> None:
    encoder = EventEncoder(subject_prefix=SYNTHETIC_PREFIX, master_id="synthetic")
    js = client.jetstream()
    for number, tag in enumerate(tags, start):
        frame = tag.encode() + b"\n\n" + pack_data({"n": number})
        encoded = encoder.encode(frame, f"synthetic-{number}", client.max_payload)
        await js.publish(encoded.subject, encoded.payload, headers=encoded.headers)


@pytest.fixture
def synthetic_stream(nats_server_module: Any) -> Any:
    async def create() -> None:
        client = await nats.connect(nats_server_module.url)
        try:
            js = client.jetstream()
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(SYNTHETIC_STREAM)
            await js.add_stream(
                StreamConfig(name=SYNTHETIC_STREAM, subjects=[f"{SYNTHETIC_PREFIX}.>"])
            )
            await publish_synthetic(client, [f"test/{n % 3}/{n}" for n in range(30)])
        finally:
            await client.close()

    asyncio.run(create())
    return nats_server_module.url


def test_replay_ignores_later_events(synthetic_stream: str) -> None:
    async def replay() -> list[int]:
        client = await nats.connect(synthetic_stream)
        numbers = []
        try:
            messages = replay_messages(
                client.jetstream(), SYNTHETIC_STREAM, [f"{SYNTHETIC_PREFIX}.>"]
            )
            async with contextlib.aclosing(messages):
                async for message in messages:
                    numbers.append(json.loads(message.data)["data"]["n"])
                    if len(numbers) == 1:
                        await publish_synthetic(client, ["test/late/1", "test/late/2"], 30)
        finally:
            await client.close()
        return numbers

    assert asyncio.run(replay()) == list(range(30))


def test_replay_several_subjects_and_end_time(synthetic_stream: str) -> None:
    async def replay(subjects: list[str], replay_range: ReplayRange) -> list[int]:
        client = await nats.connect(synthetic_stream)
        try:
            messages = replay_messages(client.jetstream(), SYNTHETIC_STREAM, subjects, replay_range)
            return [json.loads(message.data)["data"]["n"] async for message in messages]
        finally:
            await client.close()

    two_tags = [f"{SYNTHETIC_PREFIX}.test.0.>", f"{SYNTHETIC_PREFIX}.test.2.>"]
    far_future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)

    assert asyncio.run(replay(two_tags, ReplayRange())) == [n for n in range(30) if n % 3 in (0, 2)]
    assert asyncio.run(replay(two_tags, ReplayRange(start_seq=10, end_seq=20))) == [
        n for n in range(9, 20) if n % 3 in (0, 2)
    ]
    assert asyncio.run(replay([f"{SYNTHETIC_PREFIX}.>"], ReplayRange(start_time=far_future))) == []
    assert asyncio.run(replay([f"{SYNTHETIC_PREFIX}.>"], ReplayRange(end_time=long_ago))) == []


def test_replay_other_subject_prefix(synthetic_stream: str) -> None:
    result = run_cli(
        "replay", "-s", synthetic_stream, "--stream", SYNTHETIC_STREAM, "--json",
        "--subject-prefix", SYNTHETIC_PREFIX, "--tag", "test/1/*", "--count", "3",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert [event["tag"] for event in json_lines(result.stdout)] == [
        "test/1/1",
        "test/1/4",
        "test/1/7",
    ]


def test_replay_wrong_subject_prefix(synthetic_stream: str) -> None:
    result = run_cli("replay", "-s", synthetic_stream, "--stream", SYNTHETIC_STREAM)

    assert result.returncode == 1
    assert (
        f"the stream stores {SYNTHETIC_PREFIX}.>, which none of salt.events.> overlaps"
        in result.stderr
    )


# --- status ---------------------------------------------------------------------------


def test_status_table(server_url: str) -> None:
    result = run_cli("status", "-s", server_url)

    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:5] == ["MASTER", "INSTANCE", "STATE", "MODE", "SERVER"]
    (row,) = [row for row in rows if row.startswith(MASTER_ID)]
    assert row.split()[:5] == [MASTER_ID, INSTANCE, "connected", "jetstream", server_url]


def test_status_json(server_url: str) -> None:
    result = run_cli("status", "-s", server_url, "--json")

    assert result.returncode == 0, result.stderr
    (instance,) = [i for i in json.loads(result.stdout) if i["master"] == MASTER_ID]
    assert instance["instance"] == INSTANCE
    assert instance["error"] is None
    assert instance["status"]["mode"] == "jetstream"
    assert instance["status"]["state"] == "connected"
    assert instance["status"]["published"] > 0


# --- errors ---------------------------------------------------------------------------


def test_no_server_error() -> None:
    url = f"nats://127.0.0.1:{get_free_port()}"

    for command in (["tail"], ["replay"], ["status"]):
        result = run_cli(*command, "-s", url)

        assert result.returncode == 1, command
        assert f"cannot connect to {url}: Connection refused" in result.stderr
        assert "Traceback" not in result.stderr


def test_missing_stream_error(server_url: str) -> None:
    result = run_cli("replay", "-s", server_url, "--stream", "NO_SUCH_STREAM")

    assert result.returncode == 1
    assert (
        "stream NO_SUCH_STREAM not found; is the engine in jetstream mode? use --stream"
        in result.stderr
    )


def test_no_jetstream_error(make_nats_server: Any) -> None:
    server = make_nats_server(name="no-jetstream", jetstream=False)

    result = run_cli("replay", "-s", server.url)

    assert result.returncode == 1
    assert "JetStream is not enabled on" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["tail", "--tag", "salt/[job"], "'[' at index 5 has no closing ']'"),
        (["replay", "--since", "yesterday"], "invalid time 'yesterday'"),
        (["replay", "--start-seq", "5", "--end-seq", "3"], "end sequence 3 is before"),
        (["tail", "--tag", "salt/auth", "--jid", "1"], "no event can match both"),
    ],
)
def test_usage_errors(arguments: list[str], message: str) -> None:
    # No server listens on the URL: each error must come before any connection.
    result = run_cli(*arguments, "-s", f"nats://127.0.0.1:{get_free_port()}")

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_authorization_error(make_nats_server: Any) -> None:
    server = make_nats_server(
        name="auth", extra_config='authorization { user: "alice", password: "s3cret" }'
    )

    wrong = run_cli("status", "-s", server.url, "--user", "alice", "--password", "wrong")
    right = run_cli("status", "-s", server.url, "--user", "alice", "--password", "s3cret")

    assert wrong.returncode == 1
    assert f"authorization failed on {server.url}" in wrong.stderr
    assert "s3cret" not in wrong.stderr
    # The right password connects; no engine uses this server, so status still fails.
    assert right.returncode == 1
    assert f"no salt-nats engine listens on $SRV.INFO.salt-nats at {server.url}" in right.stderr


def test_tls_options(make_nats_server: Any, tmp_path: Path) -> None:
    files = write_tls_files(tmp_path)
    server = make_nats_server(
        name="tls",
        extra_config=(
            f'tls {{ cert_file: "{files["server_cert"]}", key_file: "{files["server_key"]}", '
            f'ca_file: "{files["ca"]}", verify: true }}'
        ),
    )
    tls_url = server.url.replace("nats://", "tls://")
    client_certificate = [
        "--tlscert",
        str(files["client_cert"]),
        "--tlskey",
        str(files["client_key"]),
    ]

    trusted = run_cli("status", "-s", tls_url, "--tlsca", str(files["ca"]), *client_certificate)
    untrusted = run_cli("status", "-s", tls_url, *client_certificate)

    assert trusted.returncode == 1
    assert f"no salt-nats engine listens on $SRV.INFO.salt-nats at {tls_url}" in trusted.stderr
    assert untrusted.returncode == 1
    assert "TLS handshake failed: CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def write_tls_files(directory: Path) -> dict[str, Path]:
    """Write a CA, a server certificate for 127.0.0.1 and a client certificate, as PEM."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(name: str, issuer: Any, issuer_key: Any, key: Any, **extensions: Any) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions.values():
            builder = builder.add_extension(extension, critical)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "salt-nats test CA")])
    ca = certificate(
        "salt-nats test CA",
        ca_name,
        ca_key,
        ca_key,
        basic=(x509.BasicConstraints(ca=True, path_length=None), True),
    )

    files = {"ca": directory / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certificate(
            f"salt-nats test {role}",
            ca.subject,
            ca_key,
            key,
            names=(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False,
            ),
            usage=(x509.ExtendedKeyUsage([usage]), False),
        )
        files[f"{role}_cert"] = directory / f"{role}.pem"
        files[f"{role}_key"] = directory / f"{role}-key.pem"
        files[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{role}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return files
