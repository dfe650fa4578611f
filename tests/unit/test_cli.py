"""Tests for salt_nats.cli that need no server: arguments, connection options, errors, output."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import socket
import ssl
from pathlib import Path

import pytest
from nats import errors as nats_errors

from salt_nats import cli
from salt_nats.cli import EventPrinter, build_parser, main, run_until_stopped
from salt_nats.cli_connect import (
    CommandError,
    ConnectionOptions,
    connect_failure_message,
    describe_connect_error,
)
from salt_nats.cli_status import InstanceStatus, format_duration, render_status_table
from salt_nats.consumer import Event

NATS_VARIABLES = (
    "NATS_URL",
    "NATS_USER",
    "NATS_PASSWORD",
    "NATS_CREDS",
    "NATS_NKEY",
    "NATS_CERT",
    "NATS_KEY",
    "NATS_CA",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*NATS_VARIABLES, "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


def parse(*argv: str) -> object:
    return build_parser().parse_args(list(argv))


# --- arguments ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["tail", "replay", "status", "demo"])
def test_help_of_each_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])

    assert exit_info.value.code == 0
    assert f"usage: salt-nats {command}" in capsys.readouterr().out


def test_demo_arguments_unchanged() -> None:
    args = parse("demo", "--duration", "5", "--keep", "--format", "msgpack")

    assert args.duration == 5.0
    assert args.keep is True
    assert args.format == "msgpack"


def test_tail_defaults() -> None:
    args = parse("tail")

    assert args.server == "nats://127.0.0.1:4222"
    assert args.tag == []
    assert args.subject_prefix == "salt.events"
    assert args.max_subject_bytes == 1024
    assert args.json is False
    assert args.count is None
    assert args.timeout is None
    assert args.connect_timeout == 5.0


def test_repeated_filters() -> None:
    args = parse("tail", "--tag", "salt/auth", "--tag", "salt/job/*", "--minion", "a", "--jid", "1")

    assert args.tag == ["salt/auth", "salt/job/*"]
    assert args.minion == ["a"]
    assert args.jid == ["1"]


def test_replay_arguments() -> None:
    args = parse("replay", "--since", "2026-12-04T10:00:00Z", "--until", "1m", "--end-seq", "9")

    assert args.stream == "SALT_EVENTS"
    assert args.since == datetime.datetime(2026, 12, 4, 10, 0, tzinfo=datetime.timezone.utc)
    assert args.until.tzinfo == datetime.timezone.utc
    assert args.end_seq == 9
    assert args.start_seq is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tail", "--tag", "salt/[job"], "argument --tag: invalid glob 'salt/[job'"),
        (["tail", "--minion", "web["], "argument --minion: invalid glob"),
        (["tail", "--count", "0"], "argument --count: 0 is invalid"),
        (["tail", "--timeout", "-1"], "argument --timeout: -1 is invalid"),
        (["tail", "--subject-prefix", "salt.>"], "argument --subject-prefix"),
        (["replay", "--since", "yesterday"], "argument --since: invalid time 'yesterday'"),
        (["replay", "--since", "1h", "--start-seq", "3"], "not allowed with argument"),
        (["replay", "--start-seq", "x"], "argument --start-seq: invalid integer 'x'"),
        (["status", "--tag", "x"], "unrecognized arguments: --tag x"),
    ],
)
def test_invalid_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tail", "--tag", "salt/auth", "--jid", "1"], "no event can match both"),
        (["replay", "--start-seq", "5", "--end-seq", "4"], "end sequence 4 is before"),
        (["replay", "--since", "1m", "--until", "1h"], "is before start time"),
        (["status", "--server", " , "], "--server is empty"),
        (["status", "--creds", "/nonexistent/user.creds"], "cannot read --creds file"),
    ],
)
def test_usage_errors_before_connecting(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"salt-nats {argv[0]}: error: ")
    assert message in error


# --- connection options ---------------------------------------------------------------


def test_connection_options_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4333, nats://127.0.0.1:4334")
    monkeypatch.setenv("NATS_USER", "alice")
    monkeypatch.setenv("NATS_PASSWORD", "s3cret")

    options = ConnectionOptions.from_args(parse("status"))

    assert options.servers == ("nats://127.0.0.1:4333", "nats://127.0.0.1:4334")
    assert options.user == "alice"
    assert options.password == "s3cret"


def test_command_line_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4333")

    options = ConnectionOptions.from_args(parse("status", "-s", "nats://127.0.0.1:5000"))

    assert options.servers == ("nats://127.0.0.1:5000",)


def test_connect_kwargs_authentication(tmp_path: Path) -> None:
    creds = tmp_path / "user.creds"
    seed = tmp_path / "user.nk"
    creds.write_text("creds")
    seed.write_text("seed")
    options = ConnectionOptions(
        servers=("nats://127.0.0.1:4333",),
        user="alice",
        password="s3cret",
        token="t0ken",
        creds=str(creds),
        nkey=str(seed),
        connect_timeout=3.0,
    )

    kwargs = options.connect_kwargs()

    assert kwargs == {
        "servers": ["nats://127.0.0.1:4333"],
        "connect_timeout": 3.0,
        "user": "alice",
        "password": "s3cret",
        "token": "t0ken",
        "user_credentials": str(creds),
        "nkeys_seed": str(seed),
    }


def test_connect_kwargs_without_tls() -> None:
    kwargs = ConnectionOptions(servers=("tls://127.0.0.1:4333",)).connect_kwargs()

    assert "tls" not in kwargs
    assert "tls_handshake_first" not in kwargs


def test_connect_kwargs_tls_ca(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ssl.DER_cert_to_PEM_cert(_self_signed_der()))

    kwargs = ConnectionOptions(tls_ca=str(ca_file), tls_first=True).connect_kwargs()

    assert isinstance(kwargs["tls"], ssl.SSLContext)
    assert kwargs["tls"].verify_mode == ssl.CERT_REQUIRED
    assert kwargs["tls"].check_hostname is True
    assert kwargs["tls_handshake_first"] is True


def _self_signed_der() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ConnectionOptions(tls_key="key.pem"), "--tlskey requires --tlscert"),
        (ConnectionOptions(tls_ca="/nonexistent/ca.pem"), "cannot load the CA certificates"),
        (
            ConnectionOptions(tls_cert="/nonexistent/cert.pem"),
            "cannot load the client certificate --tlscert /nonexistent/cert.pem",
        ),
        (ConnectionOptions(nkey="/nonexistent/user.nk"), "cannot read --nkey file"),
    ],
)
def test_connect_kwargs_invalid_files(options: ConnectionOptions, message: str) -> None:
    with pytest.raises(CommandError, match=message) as error:
        options.connect_kwargs()

    assert error.value.exit_status == 2


def test_tls_requested() -> None:
    assert not ConnectionOptions().tls_requested
    assert ConnectionOptions(servers=("TLS://127.0.0.1:4222",)).tls_requested
    assert ConnectionOptions(tls_ca="ca.pem").tls_requested
    assert ConnectionOptions(tls_first=True).tls_requested


# --- connection errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)"), "Connection refused"),
        (nats_errors.Error("nats: 'Authorization Violation'"), "authorization failed"),
        (nats_errors.AuthorizationError(), "authorization failed"),
        (nats_errors.Error("nats: 'Authentication Timeout'"), "authorization failed"),
        (asyncio.TimeoutError(), "timed out after 5 s"),
        (socket.gaierror(-2, "Name or service not known"), "cannot resolve the host name"),
        (nats_errors.SecureConnRequiredError(), "the server requires TLS"),
        (nats_errors.NoServersError(), "nats: no servers available for connection"),
    ],
)
def test_describe_connect_error(error: BaseException, reason: str) -> None:
    assert reason in describe_connect_error(error, 5.0)


def test_connect_failure_message_refused() -> None:
    options = ConnectionOptions(servers=("nats://127.0.0.1:1", "nats://127.0.0.1:2"))
    refused = ConnectionRefusedError(111, "Connect call failed")

    message = connect_failure_message(options, [refused, refused])

    assert message == "cannot connect to nats://127.0.0.1:1, nats://127.0.0.1:2: Connection refused"


def test_connect_failure_message_hides_user_info() -> None:
    options = ConnectionOptions(servers=("nats://alice:s3cret@127.0.0.1:1",))

    refused = connect_failure_message(options, [ConnectionRefusedError(111, "x")])
    denied = connect_failure_message(
        options, [nats_errors.Error("nats: 'Authorization Violation'")]
    )

    assert "s3cret" not in refused
    assert "nats://***@127.0.0.1:1" in refused
    assert denied.startswith("authorization failed on nats://***@127.0.0.1:1; check --user")


# --- output ---------------------------------------------------------------------------


def test_event_printer_json_lines() -> None:
    stream = io.StringIO()
    printer = EventPrinter(stream, as_json=True, color=True)

    assert printer.write(Event("salt.events.a", {}, "a", {"n": 1}))
    assert printer.write(Event("salt.events.b", {}, "b", {"n": 2}))

    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["tag"] for line in lines] == ["a", "b"]
    assert "\033[" not in stream.getvalue()
    assert printer.printed == 2


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError


def test_event_printer_broken_pipe() -> None:
    printer = EventPrinter(_ClosedPipe(), as_json=False, color=False)

    assert printer.write(Event("salt.events.a", {}, "a", {})) is False
    assert printer.broken_pipe is True
    assert printer.printed == 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (42.9, "42s"), (307, "5m07s"), (10920, "3h02m"), (187200, "2d04h"), (None, "-")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_render_status_table() -> None:
    healthy = InstanceStatus(
        master="master1",
        instance="nats",
        service_id="ID1",
        version="0.1.0",
        subject="salt-nats.status.master1.nats",
        report={
            "state": "connected",
            "mode": "jetstream",
            "server": "nats://127.0.0.1:4222",
            "uptime": 307,
            "received": 10,
            "published": 9,
            "dropped_total": 1,
            "buffered": 0,
            "lag_seconds": 0.04,
            "last_error": "TimeoutError()",
            "last_error_time": "2026-12-04T10:00:00+00:00",
        },
    )
    silent = InstanceStatus(
        master="master2",
        instance="nats",
        service_id="ID2",
        version="0.1.0",
        subject="salt-nats.status.master2.nats",
        error="no reply on salt-nats.status.master2.nats within 1 s",
    )

    lines = render_status_table([healthy, silent]).splitlines()

    assert lines[0].split() == [
        "MASTER", "INSTANCE", "STATE", "MODE", "SERVER", "UPTIME",
        "RECEIVED", "PUBLISHED", "DROPPED", "BUFFERED", "LAG",
    ]  # fmt: skip
    assert lines[1].split() == [
        "master1", "nats", "connected", "jetstream", "nats://127.0.0.1:4222", "5m07s",
        "10", "9", "1", "0", "0.0s",
    ]  # fmt: skip
    assert lines[2].split()[:4] == ["master2", "nats", "no", "reply"]
    assert lines[3] == "nats@master1: last error at 2026-12-04T10:00:00+00:00: TimeoutError()"
    assert lines[4] == "nats@master2: no reply on salt-nats.status.master2.nats within 1 s"
    # The columns line up.
    assert lines[1].index("jetstream") == lines[0].index("MODE")


# --- running until done ---------------------------------------------------------------


def test_run_until_stopped_outcomes() -> None:
    async def finished() -> None:
        await asyncio.sleep(0)

    async def endless() -> None:
        await asyncio.sleep(60)

    async def failing() -> None:
        raise ValueError("boom")

    assert asyncio.run(run_until_stopped(finished(), None)) == "done"
    assert asyncio.run(run_until_stopped(endless(), 0.05)) == "timeout"
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(run_until_stopped(failing(), 1))


def test_run_until_stopped_on_signal() -> None:
    import os
    import signal

    async def interrupted() -> str:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        return await run_until_stopped(asyncio.sleep(60), 5)

    assert asyncio.run(interrupted()) == "stopped"


def test_main_maps_command_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fail(args: object, printer: object) -> int:
        raise CommandError("cannot connect to nats://127.0.0.1:1: Connection refused")

    monkeypatch.setattr(cli, "run_tail", fail)

    assert main(["tail"]) == 1
    assert capsys.readouterr().err == (
        "salt-nats tail: error: cannot connect to nats://127.0.0.1:1: Connection refused\n"
    )
