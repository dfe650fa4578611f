"""Tests for the authentication and TLS options: parsing, connect arguments and secrets."""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path
from typing import Any

import nkeys
import pytest
from nats.aio.client import RawCredentials
from nats.errors import Error as NatsError

from salt_nats.config import (
    AUTH_OPTIONS,
    HIDDEN,
    ConfigError,
    EngineSettings,
    parse_engine_settings,
)
from salt_nats.connection import (
    SecretFile,
    connect_options,
    connection_hint,
    security_warnings,
)
from salt_nats.secrets import resolve_secrets
from tests.support.nkeys_jwt import creds_text, encode_jwt, make_nkey, make_user_nkey
from tests.support.pki import SERVER_NAME, Pki, make_pki

SECRET = "hunter2-secret"


def config_error(options: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_engine_settings(options)
    return caught.value


def resolve_error(options: dict[str, Any], opts: dict[str, Any] | None = None) -> ConfigError:
    settings = parse_engine_settings(options)
    with pytest.raises(ConfigError) as caught:
        resolve_secrets(settings, opts)
    return caught.value


def write_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def user_seed() -> str:
    return make_user_nkey().seed


@pytest.fixture(scope="module")
def creds(user_seed: str) -> str:
    account = make_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    user_jwt = encode_jwt(account, "UABC", "engine", {"type": "user"})
    return creds_text(user_jwt, make_user_nkey())


# --- parsing --------------------------------------------------------------------------


def test_auth_defaults() -> None:
    settings = parse_engine_settings({})

    assert settings.auth_method == "none"
    assert settings.tls_summary == "default"
    assert settings.tls_verify is True
    assert settings.tls_handshake_first is False


def test_auth_options_are_fields() -> None:
    settings = EngineSettings()

    for key in AUTH_OPTIONS:
        assert hasattr(settings, key), key


@pytest.mark.parametrize(
    ("options", "method"),
    [
        ({"user": "engine", "password": SECRET}, "user"),
        ({"user": "engine", "password_file": "/etc/salt/nats.pass"}, "user"),
        ({"token": SECRET}, "token"),
        ({"token_file": "/etc/salt/nats.token"}, "token"),
        ({"nkeys_seed": "/etc/salt/engine.nk"}, "nkey"),
        ({"creds": "/etc/salt/engine.creds"}, "creds"),
        ({"creds": "/etc/salt/engine.creds", "token": SECRET}, "creds+token"),
    ],
)
def test_auth_method_accepted(options: dict[str, Any], method: str) -> None:
    assert parse_engine_settings(options).auth_method == method


def test_inline_seed_accepted(user_seed: str) -> None:
    assert parse_engine_settings({"nkeys_seed": user_seed}).nkeys_seed == user_seed


def test_creds_text_accepted(creds: str) -> None:
    assert parse_engine_settings({"creds": creds}).creds == creds


@pytest.mark.parametrize(
    "value", ["sdb://vault/nats/password", f"file:///etc/salt/{SECRET}", SECRET]
)
def test_password_forms_accepted(value: str) -> None:
    assert parse_engine_settings({"user": "engine", "password": value}).password == value


def test_tls_options_accepted(pki: Pki) -> None:
    settings = parse_engine_settings(
        {
            "servers": "tls://127.0.0.1:4222",
            "tls_ca_file": str(pki.ca_file),
            "tls_cert_file": str(pki.client.cert_file),
            "tls_key_file": str(pki.client.key_file),
            "tls_server_name": SERVER_NAME,
            "tls_handshake_first": "yes",
            "tls_verify": "false",
        }
    )

    assert settings.tls_handshake_first is True
    assert settings.tls_verify is False
    assert settings.tls_summary == (
        f"ca,client-cert,server-name={SERVER_NAME},handshake-first,no-verify"
    )


@pytest.mark.parametrize(
    ("options", "key", "problem"),
    [
        ({"user": "engine"}, "user", "no password given"),
        ({"password": SECRET}, "password", "a password needs a user"),
        ({"password_file": "/etc/p"}, "password_file", "a password needs a user"),
        (
            {"user": "e", "password": SECRET, "password_file": "/etc/p"},
            "password_file",
            "password is set as well",
        ),
        ({"token": SECRET, "token_file": "/etc/t"}, "token_file", "token is set as well"),
        ({"user": "e", "password": SECRET, "token": SECRET}, "token", "token and user"),
        (
            {"nkeys_seed": "/etc/e.nk", "creds": "/etc/e.creds"},
            "nkeys_seed",
            "nkeys_seed and creds",
        ),
        ({"user": "e", "password": SECRET, "creds": "/etc/e.creds"}, "user", "user and creds"),
        ({"user": "e", "password": SECRET, "nkeys_seed": "/etc/e.nk"}, "user", "user and"),
        ({"tls_cert_file": "/etc/c.pem"}, "tls_cert_file", "tls_key_file is not set"),
        ({"tls_key_file": "/etc/k.pem"}, "tls_key_file", "tls_cert_file is not set"),
    ],
    ids=[
        "user-without-password",
        "password-without-user",
        "password-file-without-user",
        "password-twice",
        "token-twice",
        "token-with-user",
        "seed-with-creds",
        "creds-with-user",
        "seed-with-user",
        "cert-without-key",
        "key-without-cert",
    ],
)
def test_conflicting_auth_rejected(options: dict[str, Any], key: str, problem: str) -> None:
    error = config_error(options)

    assert error.key == key
    assert problem in error.problem
    assert error.fix
    assert SECRET not in str(error)


def test_url_user_info_with_auth_rejected() -> None:
    error = config_error({"servers": f"nats://admin:{SECRET}@a:4222", "token": "other"})

    assert error.key == "servers"
    assert "nats://***@a:4222" in str(error)
    assert SECRET not in str(error)


def test_url_user_info_alone_accepted() -> None:
    settings = parse_engine_settings({"servers": f"nats://admin:{SECRET}@a:4222"})

    assert settings.auth_method == "none"


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"servers": "wss://a:443", "tls_server_name": "a.example.com"}, "tls_server_name"),
        ({"servers": "ws://a:80", "tls_handshake_first": True}, "tls_handshake_first"),
        ({"servers": "ws://a:80", "tls_ca_file": "/etc/ca.pem"}, "tls_ca_file"),
        ({"servers": "ws://a:80", "tls_verify": False}, "tls_verify"),
    ],
)
def test_websocket_tls_option_rejected(options: dict[str, Any], key: str) -> None:
    assert config_error(options).key == key


def test_wss_with_ca_accepted() -> None:
    settings = parse_engine_settings({"servers": "wss://a:443", "tls_ca_file": "/etc/ca.pem"})

    assert settings.tls_ca_file == "/etc/ca.pem"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tls_ca_file", "ca.pem"),
        ("tls_cert_file", "certs/client.pem"),
        ("password_file", "nats.pass"),
        ("token_file", "~/nats.token"),
    ],
)
def test_relative_path_rejected(key: str, value: str) -> None:
    options = {key: value, "user": "e"} if key == "password_file" else {key: value}
    error = config_error(options)

    assert error.key == key
    assert error.problem == "not an absolute path"


@pytest.mark.parametrize("key", ["nkeys_seed", "creds"])
def test_seed_or_creds_garbage_hidden(key: str) -> None:
    error = config_error({key: SECRET})

    assert error.key == key
    assert SECRET not in str(error)
    assert error.value == HIDDEN


@pytest.mark.parametrize("value", ["sdb://nokey", "sdb://profile/", "sdb:///key"])
def test_invalid_sdb_uri_rejected(value: str) -> None:
    error = config_error({"token": value})

    assert error.problem == "not a valid sdb URI"


def test_relative_file_uri_rejected() -> None:
    error = config_error({"token": "file://etc/nats.token"})

    assert "absolute path" in error.problem


@pytest.mark.parametrize("value", ["nats server", "-nats.example.com", "a..b", "x" * 64])
def test_invalid_server_name_rejected(value: str) -> None:
    assert config_error({"tls_server_name": value}).key == "tls_server_name"


def test_user_with_whitespace_rejected() -> None:
    assert config_error({"user": "engine ", "password": SECRET}).key == "user"


# --- secrets stay out of text -----------------------------------------------------------


def test_repr_hides_secrets(user_seed: str) -> None:
    settings = EngineSettings(password=SECRET, token=SECRET, nkeys_seed=user_seed, creds=SECRET)

    assert SECRET not in repr(settings)
    assert user_seed not in repr(settings)


def test_describe_names_auth_without_secrets() -> None:
    settings = parse_engine_settings({"user": "engine", "password": SECRET})

    assert "auth=user" in settings.describe()
    assert "tls=default" in settings.describe()
    assert SECRET not in settings.describe()


def test_path_shown_in_error() -> None:
    error = ConfigError("password_file", "/etc/salt/nats.pass", "file not found", "create it")

    assert "'/etc/salt/nats.pass'" in str(error)


@pytest.mark.parametrize(
    "value",
    [
        "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----",
        "SUAAVGJFMUM3ZL2AKVWD7G4IOQ5QB4D7ZLBAKO3XWD6MSIFWIRGVUUMLJQ",
        "sdb://vault/nats/seed",
    ],
    ids=["pem", "seed", "sdb"],
)
def test_key_material_in_path_option_hidden(value: str) -> None:
    error = ConfigError("tls_key_file", value, "file not found", "create it")

    assert value not in str(error)
    assert error.value == HIDDEN


# --- connect arguments -----------------------------------------------------------------


def test_no_auth_adds_no_arguments() -> None:
    options = connect_options(parse_engine_settings({}), "test")

    for key in ("user", "password", "token", "nkeys_seed", "user_credentials", "tls"):
        assert key not in options


def test_user_password_arguments() -> None:
    options = connect_options(parse_engine_settings({"user": "engine", "password": SECRET}), "t")

    assert options["user"] == "engine"
    assert options["password"] == SECRET


def test_password_file_read_at_each_call(tmp_path: Path) -> None:
    path = write_file(tmp_path / "password", f"{SECRET}\n")
    options = connect_options(
        parse_engine_settings({"user": "engine", "password_file": str(path)}), "t"
    )
    password = options["password"]

    assert isinstance(password, SecretFile)
    assert password() == SECRET
    write_file(path, "rotated\n")
    assert password() == "rotated"
    assert SECRET not in repr(password)
    assert str(path) in repr(password)


def test_token_file_uri_argument(tmp_path: Path) -> None:
    path = write_file(tmp_path / "token", SECRET)
    options = connect_options(parse_engine_settings({"token": f"file://{path}"}), "t")

    assert options["token"]() == SECRET


def test_secret_file_empty_raises(tmp_path: Path) -> None:
    secret = SecretFile("token_file", str(write_file(tmp_path / "token", "\n")))

    with pytest.raises(NatsError, match="is empty"):
        secret()


def test_secret_file_missing_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SecretFile("token_file", str(tmp_path / "missing"))()


def test_seed_path_and_text_arguments(user_seed: str) -> None:
    from_path = connect_options(parse_engine_settings({"nkeys_seed": "/etc/e.nk"}), "t")
    from_text = connect_options(parse_engine_settings({"nkeys_seed": f"{user_seed}\n"}), "t")

    assert from_path["nkeys_seed"] == "/etc/e.nk"
    assert "nkeys_seed_str" not in from_path
    assert from_text["nkeys_seed_str"] == user_seed
    assert "nkeys_seed" not in from_text


def test_creds_path_and_text_arguments(creds: str) -> None:
    from_path = connect_options(parse_engine_settings({"creds": "/etc/e.creds"}), "t")
    from_text = connect_options(parse_engine_settings({"creds": creds}), "t")

    assert from_path["user_credentials"] == "/etc/e.creds"
    assert isinstance(from_text["user_credentials"], RawCredentials)
    assert from_text["user_credentials"].data == creds


@pytest.mark.parametrize("key", ["user", "password", "token", "nkeys_seed", "creds"])
def test_unresolved_sdb_rejected(key: str) -> None:
    options = {key: "sdb://vault/nats/secret"}
    if key in ("user", "password"):
        options = {"user": "engine", "password": SECRET, **options}
    settings = parse_engine_settings(options)

    with pytest.raises(ConfigError) as caught:
        connect_options(settings, "t")

    assert caught.value.key == key
    assert "not resolved" in caught.value.problem


def test_tls_ca_and_server_name_arguments(pki: Pki) -> None:
    settings = parse_engine_settings(
        {"tls_ca_file": str(pki.ca_file), "tls_server_name": SERVER_NAME}
    )
    options = connect_options(settings, "t")

    context = options["tls"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert options["tls_hostname"] == SERVER_NAME
    assert "tls_handshake_first" not in options


def test_tls_verify_false_arguments() -> None:
    options = connect_options(parse_engine_settings({"tls_verify": False}), "t")

    assert options["tls"].verify_mode == ssl.CERT_NONE
    assert options["tls"].check_hostname is False


def test_tls_handshake_first_without_context() -> None:
    options = connect_options(parse_engine_settings({"tls_handshake_first": True}), "t")

    assert options["tls_handshake_first"] is True
    assert "tls" not in options


def test_mutual_tls_context_loads(pki: Pki) -> None:
    settings = parse_engine_settings(
        {
            "tls_ca_file": str(pki.ca_file),
            "tls_cert_file": str(pki.client.cert_file),
            "tls_key_file": str(pki.client.key_file),
        }
    )

    assert isinstance(connect_options(settings, "t")["tls"], ssl.SSLContext)


def test_security_warning_for_tls_verify_false() -> None:
    assert security_warnings(parse_engine_settings({})) == []
    warnings = security_warnings(parse_engine_settings({"tls_verify": False}))

    assert len(warnings) == 1
    assert "tls_verify is false" in warnings[0]


def test_connection_hint_without_credentials() -> None:
    error = NatsError("nats: 'Authorization Violation'")

    hint = connection_hint(error, parse_engine_settings({}))

    assert "the server requires credentials" in hint


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NatsError("nats: 'Authorization Violation'"), "rejected the user credentials"),
        (ssl.SSLCertVerificationError("certificate verify failed: x"), "tls_server_name"),
        (NatsError("nats: empty response from server when expecting INFO message"), "handshake"),
        (ConnectionRefusedError("refused"), ""),
    ],
    ids=["auth", "certificate", "handshake-first", "other"],
)
def test_connection_hint(error: Exception, expected: str) -> None:
    settings = parse_engine_settings({"user": "engine", "password": SECRET})
    hint = connection_hint(error, settings)

    if expected:
        assert expected in hint
    else:
        assert hint == ""


# --- resolve_secrets: files -------------------------------------------------------------


def test_resolve_without_secrets_unchanged() -> None:
    settings = parse_engine_settings({"user": "engine", "password": SECRET})

    assert resolve_secrets(settings, None) == settings


@pytest.mark.parametrize("key", ["password_file", "token_file", "tls_ca_file", "nkeys_seed"])
def test_missing_file_names_key_and_path(key: str, tmp_path: Path) -> None:
    path = str(tmp_path / "missing")
    options = {key: path}
    if key == "password_file":
        options["user"] = "engine"

    error = resolve_error(options)

    assert error.key == key
    assert error.problem == "file not found"
    assert path in str(error)


def test_directory_rejected(tmp_path: Path) -> None:
    error = resolve_error({"token_file": str(tmp_path)})

    assert error.problem in ("is a directory", "not a regular file")


def test_empty_file_rejected(tmp_path: Path) -> None:
    path = write_file(tmp_path / "token", "\n")

    assert resolve_error({"token_file": str(path)}).problem == "the file is empty"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_rejected(tmp_path: Path) -> None:
    path = write_file(tmp_path / "token", SECRET, mode=0o000)

    error = resolve_error({"token_file": str(path)})

    assert "permission denied" in error.problem


def test_password_file_uri_checked(tmp_path: Path) -> None:
    error = resolve_error({"user": "e", "password": f"file://{tmp_path / 'missing'}"})

    assert error.key == "password"
    assert error.problem == "file not found"


def test_world_readable_secret_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_file(tmp_path / "token", SECRET, mode=0o644)
    caplog.set_level(logging.WARNING, logger="salt_nats.secrets")

    resolve_secrets(parse_engine_settings({"token_file": str(path)}), None)

    assert "readable by every user" in caplog.text
    assert SECRET not in caplog.text


def test_seed_file_accepted(tmp_path: Path, user_seed: str) -> None:
    path = write_file(tmp_path / "engine.nk", f"{user_seed}\n")
    settings = parse_engine_settings({"nkeys_seed": str(path)})

    assert resolve_secrets(settings, None) == settings


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not a seed\n", "does not contain an NKEY seed"),
        (make_nkey(nkeys.PREFIX_BYTE_ACCOUNT).seed, "not a user seed"),
    ],
    ids=["garbage", "account-seed"],
)
def test_bad_seed_file_rejected(tmp_path: Path, content: str, problem: str) -> None:
    path = write_file(tmp_path / "engine.nk", content)

    error = resolve_error({"nkeys_seed": str(path)})

    assert problem in error.problem
    assert str(path) in str(error)
    assert content.strip() not in str(error)


def test_inline_account_seed_rejected() -> None:
    seed = make_nkey(nkeys.PREFIX_BYTE_ACCOUNT).seed

    error = resolve_error({"nkeys_seed": seed})

    assert "not a user seed" in error.problem
    assert seed not in str(error)


def test_creds_file_accepted(tmp_path: Path, creds: str) -> None:
    path = write_file(tmp_path / "engine.creds", creds)
    settings = parse_engine_settings({"creds": str(path)})

    assert resolve_secrets(settings, None) == settings


@pytest.mark.parametrize(
    ("drop", "problem"),
    [("BEGIN NATS USER JWT", "no user JWT"), ("BEGIN USER NKEY SEED", "no NKEY seed")],
    ids=["without-jwt", "without-seed"],
)
def test_incomplete_creds_rejected(tmp_path: Path, creds: str, drop: str, problem: str) -> None:
    text = "\n".join(line for line in creds.splitlines() if drop not in line)
    path = write_file(tmp_path / "engine.creds", text)

    error = resolve_error({"creds": str(path)})

    assert problem in error.problem
    for line in creds.splitlines():
        if len(line) > 40:  # the JWT and the seed
            assert line not in str(error)


def test_creds_text_checked(creds: str) -> None:
    broken = creds.replace("BEGIN USER NKEY SEED", "BEGIN SOMETHING")

    error = resolve_error({"creds": broken})

    assert "no NKEY seed" in error.problem
    assert "credentials text" in error.problem


# --- resolve_secrets: TLS files ---------------------------------------------------------


def test_tls_files_accepted(pki: Pki) -> None:
    settings = parse_engine_settings(
        {
            "tls_ca_file": str(pki.ca_file),
            "tls_cert_file": str(pki.client.cert_file),
            "tls_key_file": str(pki.client.key_file),
        }
    )

    assert resolve_secrets(settings, None) == settings


def test_ca_file_without_certificate_rejected(tmp_path: Path) -> None:
    path = write_file(tmp_path / "ca.pem", "not a certificate\n")

    error = resolve_error({"tls_ca_file": str(path)})

    assert error.key == "tls_ca_file"
    assert "no PEM certificate" in error.problem


def test_mismatched_key_rejected(pki: Pki) -> None:
    error = resolve_error(
        {"tls_cert_file": str(pki.client.cert_file), "tls_key_file": str(pki.server.key_file)}
    )

    assert error.key == "tls_key_file"
    assert "does not belong to the certificate" in error.problem
    assert pki.server.key_text.splitlines()[2] not in str(error)


def test_key_file_without_key_rejected(pki: Pki) -> None:
    error = resolve_error(
        {"tls_cert_file": str(pki.client.cert_file), "tls_key_file": str(pki.ca_file)}
    )

    assert error.key == "tls_key_file"
    assert "no PEM private key" in error.problem


def test_encrypted_key_rejected(pki: Pki, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.client.key_file.read_bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    path = tmp_path / "encrypted-key.pem"
    path.write_bytes(encrypted)

    error = resolve_error({"tls_cert_file": str(pki.client.cert_file), "tls_key_file": str(path)})

    assert "encrypted" in error.problem


# --- resolve_secrets: sdb ----------------------------------------------------------------


@pytest.fixture
def fake_sdb(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace salt.utils.sdb.sdb_get with a lookup in the returned dict."""
    import salt.utils.sdb

    values: dict[str, Any] = {}
    calls: list[tuple[str, bool]] = []

    def sdb_get(uri: str, opts: Any, utils: Any = None, strict: bool = False) -> Any:
        calls.append((uri, strict))
        value = values[uri]
        if isinstance(value, Exception):
            raise value
        return value

    monkeypatch.setattr(salt.utils.sdb, "sdb_get", sdb_get)
    values["__calls__"] = calls
    return values


def test_sdb_password_resolved(fake_sdb: dict[str, Any]) -> None:
    fake_sdb["sdb://vault/nats/password"] = SECRET
    settings = parse_engine_settings({"user": "engine", "password": "sdb://vault/nats/password"})

    resolved = resolve_secrets(settings, {"vault": {"driver": "vault"}})

    assert resolved.password == SECRET
    assert settings.password == "sdb://vault/nats/password"
    assert fake_sdb["__calls__"] == [("sdb://vault/nats/password", True)]


def test_sdb_seed_resolved(fake_sdb: dict[str, Any], user_seed: str) -> None:
    fake_sdb["sdb://vault/nats/seed"] = f"{user_seed}\n"
    settings = parse_engine_settings({"nkeys_seed": "sdb://vault/nats/seed"})

    resolved = resolve_secrets(settings, {})

    assert connect_options(resolved, "t")["nkeys_seed_str"] == user_seed


def test_sdb_numeric_value_resolved(fake_sdb: dict[str, Any]) -> None:
    fake_sdb["sdb://vault/nats/token"] = 123456

    resolved = resolve_secrets(parse_engine_settings({"token": "sdb://vault/nats/token"}), {})

    assert resolved.token == "123456"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "returned no value"),
        ("", "returned no value"),
        (["a"], "returned a list"),
        ("sdb://other/key", "another sdb URI"),
        (RuntimeError("vault sealed"), "RuntimeError: vault sealed"),
    ],
    ids=["none", "empty", "list", "nested-uri", "driver-error"],
)
def test_sdb_failure_rejected(fake_sdb: dict[str, Any], value: Any, problem: str) -> None:
    fake_sdb["sdb://vault/nats/token"] = value

    error = resolve_error({"token": "sdb://vault/nats/token"}, {})

    assert error.key == "token"
    assert problem in error.problem
    assert "sdb://vault/nats/token" in str(error)


def test_sdb_invalid_seed_hidden(fake_sdb: dict[str, Any]) -> None:
    fake_sdb["sdb://vault/nats/seed"] = SECRET

    error = resolve_error({"nkeys_seed": "sdb://vault/nats/seed"}, {})

    assert "invalid for nkeys_seed" in error.problem
    assert SECRET not in str(error)


def test_sdb_without_opts_rejected() -> None:
    error = resolve_error({"token": "sdb://vault/nats/token"}, None)

    assert "without the Salt config" in error.problem
