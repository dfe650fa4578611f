"""Tests for engine option parsing in salt_nats.config."""

from __future__ import annotations

from typing import Any

import pytest

from salt_nats.config import (
    DEFAULT_EXCLUDE,
    SECRET_KEYS,
    ConfigError,
    EngineSettings,
    parse_engine_settings,
    redact_url,
)


def config_error(options: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_engine_settings(options)
    return caught.value


# Defaults


def test_defaults_without_options() -> None:
    assert parse_engine_settings(None) == EngineSettings(name="nats")


def test_defaults_from_empty_mapping() -> None:
    assert parse_engine_settings({}) == EngineSettings(name="nats")


def test_default_values() -> None:
    settings = parse_engine_settings({})

    assert settings.servers == ("nats://127.0.0.1:4222",)
    assert settings.subject_prefix == "salt.events"
    assert settings.mode == "core"
    assert settings.format == "json"
    assert settings.include == ()
    assert settings.exclude == ()
    assert settings.exclude_defaults is True
    assert settings.oversize == "truncate"
    assert settings.buffer_max_events == 10_000
    assert settings.buffer_max_bytes == 64 * 1024**2
    assert settings.buffer_full == "drop_oldest"
    assert settings.shutdown_timeout < 5


def test_default_name_used() -> None:
    assert parse_engine_settings({}, default_name="prod-bus").name == "prod-bus"


def test_empty_name_uses_default() -> None:
    assert parse_engine_settings({"name": ""}, default_name="prod-bus").name == "prod-bus"


def test_name_overrides_default() -> None:
    assert parse_engine_settings({"name": "edge"}, default_name="prod-bus").name == "edge"


# Valid forms of each option


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["nats://a:4222", "tls://b:4443"], ("nats://a:4222", "tls://b:4443")),
        (("nats://a:4222",), ("nats://a:4222",)),
        ("nats://a:4222,nats://b:4222", ("nats://a:4222", "nats://b:4222")),
        ("nats://a:4222, nats://b:4222", ("nats://a:4222", "nats://b:4222")),
        ("nats.example.com", ("nats://nats.example.com",)),
        ("nats.example.com:4222", ("nats://nats.example.com:4222",)),
        (["10.0.0.1:4222"], ("nats://10.0.0.1:4222",)),
        ("[::1]:4222", ("nats://[::1]:4222",)),
        ("user:pass@a:4222", ("nats://user:pass@a:4222",)),
        (["ws://a:8080", "wss://b:443"], ("ws://a:8080", "wss://b:443")),
    ],
)
def test_servers_accepted(value: Any, expected: tuple[str, ...]) -> None:
    assert parse_engine_settings({"servers": value}).servers == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("64MiB", 64 * 1024**2),
        ("64M", 64 * 1024**2),
        ("64 mb", 64 * 1024**2),
        ("512K", 512 * 1024),
        ("512KB", 512 * 1024),
        ("1G", 1024**3),
        ("1.5K", 1536),
        ("1048576", 1048576),
        (1048576, 1048576),
        ("2048b", 2048),
    ],
)
def test_buffer_max_bytes_sizes(value: Any, expected: int) -> None:
    assert parse_engine_settings({"buffer_max_bytes": value}).buffer_max_bytes == expected


def test_pending_size_accepts_size() -> None:
    assert parse_engine_settings({"pending_size": "4MiB"}).pending_size == 4 * 1024**2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("yes", True),
        ("on", True),
        ("True", True),
        ("false", False),
        ("no", False),
        ("off", False),
    ],
)
def test_exclude_defaults_booleans(value: Any, expected: bool) -> None:
    assert parse_engine_settings({"exclude_defaults": value}).exclude_defaults is expected


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("format", "msgpack", "msgpack"),
        ("format", "JSON", "json"),
        ("mode", "core", "core"),
        ("oversize", "drop", "drop"),
        ("buffer_full", "drop_newest", "drop_newest"),
        ("subject_prefix", "site1.salt", "site1.salt"),
        ("name", "prod-bus_1.a", "prod-bus_1.a"),
        ("max_subject_bytes", 64, 64),
        ("max_subject_bytes", "3800", 3800),
        ("buffer_max_events", 1, 1),
        ("max_outstanding_pings", " 3 ", 3),
        ("connect_timeout", 0.5, 0.5),
        ("connect_timeout", "1.5", 1.5),
        ("reconnect_time_wait", 0, 0.0),
        ("ping_interval", 30, 30.0),
        ("flush_timeout", 10, 10.0),
        ("shutdown_timeout", 4.9, 4.9),
        ("shutdown_timeout", 0.1, 0.1),
        ("drop_log_interval", 0, 0.0),
        ("include", ["salt/job/*"], ("salt/job/*",)),
        ("include", "salt/auth", ("salt/auth",)),
        ("exclude", ["minion/refresh/*", "salt/auth"], ("minion/refresh/*", "salt/auth")),
        ("mode", "jetstream", "jetstream"),
        ("stream", "SALT_EVENTS-2", "SALT_EVENTS-2"),
        ("stream_create", "no", False),
        ("stream_replicas", 3, 3),
        ("stream_max_bytes", -1, -1),
        ("stream_max_bytes", "10GiB", 10 * 1024**3),
        ("stream_max_age", 0, 0.0),
        ("ack_timeout", "2.5", 2.5),
        ("max_inflight", 65536, 65536),
    ],
)
def test_option_accepted(key: str, value: Any, expected: Any) -> None:
    assert getattr(parse_engine_settings({key: value}), key) == expected


def test_glob_string_not_split() -> None:
    # A glob may contain a comma inside brackets, so only servers split on commas.
    assert parse_engine_settings({"include": "salt/[a,b]/*"}).include == ("salt/[a,b]/*",)


def test_reconnect_waits_equal() -> None:
    settings = parse_engine_settings({"reconnect_time_wait": 5, "reconnect_max_wait": 5})

    assert settings.reconnect_max_wait == 5.0


def test_settings_frozen() -> None:
    settings = parse_engine_settings({})

    with pytest.raises(AttributeError):
        settings.format = "msgpack"  # type: ignore[misc]


# Invalid options


INVALID_CASES = [
    pytest.param("servers", 4222, id="servers-int"),
    pytest.param("servers", {"url": "nats://a"}, id="servers-dict"),
    pytest.param("servers", [], id="servers-empty-list"),
    pytest.param("servers", "", id="servers-empty-string"),
    pytest.param("servers", ["nats://a", 5], id="servers-non-string-item"),
    pytest.param("servers", "http://x", id="servers-http"),
    pytest.param("servers", "nats://a:notaport", id="servers-bad-port"),
    pytest.param("servers", "nats://[::1", id="servers-bad-ipv6"),
    pytest.param("servers", "nats://", id="servers-no-host"),
    pytest.param("servers", ["nats://a", "ws://b"], id="servers-mixed-websocket"),
    pytest.param("name", "has space", id="name-space"),
    pytest.param("name", "x" * 65, id="name-too-long"),
    pytest.param("name", 7, id="name-int"),
    pytest.param("subject_prefix", "salt.*", id="prefix-wildcard"),
    pytest.param("subject_prefix", "salt.>", id="prefix-gt"),
    pytest.param("subject_prefix", ".salt", id="prefix-leading-dot"),
    pytest.param("subject_prefix", "salt..events", id="prefix-empty-token"),
    pytest.param("subject_prefix", "", id="prefix-empty"),
    pytest.param("subject_prefix", "x" * 1010, id="prefix-fills-subject"),
    pytest.param("mode", "jetstream-ish", id="mode-unknown"),
    pytest.param("format", "yaml", id="format-unknown"),
    pytest.param("format", 1, id="format-int"),
    pytest.param("oversize", "split", id="oversize-unknown"),
    pytest.param("buffer_full", "block", id="buffer-full-unknown"),
    pytest.param("include", 5, id="include-int"),
    pytest.param("include", ["ok", ""], id="include-empty-glob"),
    pytest.param("exclude", {"a": 1}, id="exclude-dict"),
    pytest.param("exclude_defaults", "maybe", id="bool-word"),
    pytest.param("exclude_defaults", 1, id="bool-int"),
    pytest.param("max_subject_bytes", 63, id="subject-bytes-low"),
    pytest.param("max_subject_bytes", 3801, id="subject-bytes-high"),
    pytest.param("max_subject_bytes", 100.5, id="subject-bytes-float"),
    pytest.param("max_subject_bytes", True, id="subject-bytes-bool"),
    pytest.param("buffer_max_events", 0, id="events-zero"),
    pytest.param("buffer_max_events", "ten", id="events-word"),
    pytest.param("max_outstanding_pings", "--5", id="pings-double-minus"),
    pytest.param("max_outstanding_pings", "\u00b2", id="pings-superscript-digit"),
    pytest.param("buffer_max_bytes", 1023, id="bytes-too-small"),
    pytest.param("buffer_max_bytes", "64 parsecs", id="bytes-unit"),
    pytest.param("buffer_max_bytes", "-1K", id="bytes-negative"),
    pytest.param("buffer_max_bytes", 1.5e6, id="bytes-float"),
    pytest.param("buffer_max_bytes", True, id="bytes-bool"),
    pytest.param("pending_size", "32K", id="pending-too-small"),
    pytest.param("connect_timeout", 0, id="timeout-zero"),
    pytest.param("connect_timeout", "soon", id="timeout-word"),
    pytest.param("connect_timeout", "nan", id="timeout-nan"),
    pytest.param("connect_timeout", "inf", id="timeout-inf"),
    pytest.param("connect_timeout", [1], id="timeout-list"),
    pytest.param("ping_interval", False, id="seconds-bool"),
    pytest.param("reconnect_time_wait", -1, id="wait-negative"),
    pytest.param("shutdown_timeout", 5, id="shutdown-5"),
    pytest.param("shutdown_timeout", 6, id="shutdown-6"),
    pytest.param("shutdown_timeout", 0, id="shutdown-zero"),
    pytest.param("reconnect_max_wait", 1, id="max-wait-below-time-wait"),
    pytest.param("stream", "salt.events", id="stream-dot"),
    pytest.param("stream_replicas", 6, id="replicas-high"),
    pytest.param("stream_max_bytes", -2, id="stream-bytes-negative"),
    pytest.param("max_inflight", 0, id="inflight-zero"),
]


@pytest.mark.parametrize(("key", "value"), INVALID_CASES)
def test_invalid_option_message(key: str, value: Any) -> None:
    message = str(config_error({key: value}))

    assert repr(key) in message
    assert repr(value) in message
    assert "Fix:" in message


@pytest.mark.parametrize(("key", "value"), INVALID_CASES)
def test_invalid_option_fields(key: str, value: Any) -> None:
    error = config_error({key: value})

    assert error.key == key
    assert error.fix


def test_shutdown_timeout_6_rejected() -> None:
    # The master kills an engine 5 s after SIGTERM, so the flush must end before that.
    error = config_error({"shutdown_timeout": 6})

    assert "4.9" in error.fix


def test_prefix_wildcard_names_problem() -> None:
    assert "wildcard" in config_error({"subject_prefix": "salt.*"}).problem


def test_http_server_rejected() -> None:
    assert "not a NATS server URL" in str(config_error({"servers": "http://x"}))


def test_unknown_key_suggests_match() -> None:
    error = config_error({"sever": "nats://a:4222"})

    assert error.key == "sever"
    assert "did you mean 'servers'?" in error.fix


def test_unknown_key_message() -> None:
    message = str(config_error({"sever": "nats://a:4222"}))

    assert "'sever'" in message
    assert "'nats://a:4222'" in message
    assert "unknown option" in message
    assert "Fix:" in message


def test_unknown_key_lists_valid() -> None:
    assert "buffer_max_events" in config_error({"bogus": 1}).fix


def test_unknown_key_without_match() -> None:
    assert "remove it" in config_error({"zzzzzz": 1}).fix


def test_first_invalid_stops_parsing() -> None:
    error = config_error({"format": "yaml", "oversize": "split"})

    assert error.key == "format"


# Secrets stay out of messages


@pytest.mark.parametrize("key", sorted(SECRET_KEYS))
def test_secret_key_hidden(key: str) -> None:
    message = str(config_error({key: ["hunter2-secret"]}))

    assert "hunter2-secret" not in message
    assert "<hidden>" in message


@pytest.mark.parametrize(
    "key", ["nkeys_seed", "user_credentials", "user_password", "auth_token", "PASSWORD"]
)
def test_password_like_key_hidden(key: str) -> None:
    assert "hunter2-secret" not in str(config_error({key: "hunter2-secret"}))


@pytest.mark.parametrize(
    "value",
    [
        "nats://user:hunter2-secret@host:notaport",
        "user:hunter2-secret@host:notaport",
        "http://user:hunter2-secret@host:4222",
        "nats://user:hunter2-secret@a:4222,",
        ["nats://user:hunter2-secret@a:4222", ""],
        ["nats://user:hunter2-secret@a:4222", "ws://b:8080"],
    ],
    ids=["bad-port", "no-scheme", "http", "trailing-comma", "empty-item", "mixed-websocket"],
)
def test_server_password_hidden(value: Any) -> None:
    assert "hunter2-secret" not in str(config_error({"servers": value}))


def test_describe_hides_password() -> None:
    settings = parse_engine_settings({"servers": "nats://user:hunter2-secret@a:4222"})

    assert "hunter2-secret" not in settings.describe()


def test_describe_names_instance() -> None:
    settings = parse_engine_settings({"name": "edge", "format": "msgpack"})

    assert "name=edge" in settings.describe()
    assert "format=msgpack" in settings.describe()


# redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nats://user:pass@host:4222", "nats://***@host:4222"),
        ("nats://token@host:4222", "nats://***@host:4222"),
        ("tls://user:pass@host", "tls://***@host"),
        ("nats://user:pass@[::1]:4222", "nats://***@[::1]:4222"),
        ("nats://user:pass@host:notaport", "nats://***@host:notaport"),
        ("user:pass@host:4222", "***@host:4222"),
        ("nats://host:4222", "nats://host:4222"),
        ("nats://host:4222/path@x", "nats://host:4222/path@x"),
        ("host", "host"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# excluded_globs


def test_excluded_globs_with_defaults() -> None:
    settings = parse_engine_settings({"exclude": ["minion/refresh/*"]})

    assert settings.excluded_globs == (*DEFAULT_EXCLUDE, "minion/refresh/*")


def test_excluded_globs_without_defaults() -> None:
    settings = parse_engine_settings({"exclude": ["minion/refresh/*"], "exclude_defaults": False})

    assert settings.excluded_globs == ("minion/refresh/*",)


def test_excluded_globs_default_only() -> None:
    assert parse_engine_settings({}).excluded_globs == DEFAULT_EXCLUDE


def test_excluded_globs_none() -> None:
    assert parse_engine_settings({"exclude_defaults": "no"}).excluded_globs == ()


def test_default_excludes_listed() -> None:
    assert set(DEFAULT_EXCLUDE) == {
        "salt/wheel/*/ret",
        "salt/job/*/publish",
        "cluster/*",
        "salt-nats/*",
    }
