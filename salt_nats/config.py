"""Typed settings for the engine, parsed from the ``engines:`` entry of the master config.

Every option is a field of :class:`EngineSettings` with its default and help text in
the field metadata; the options table in ``docs/configuration.md`` is generated from
it (``python -m salt_nats.config``), and a unit test keeps the two in sync.

Parsing is strict: an unknown key, a wrong type or an out-of-range value raises
:class:`ConfigError`, whose message names the key, the value and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from salt_nats import subjects
from salt_nats.inbound import InboundConfigError, InboundSettings, parse_inbound_settings

# Option names whose values must never appear in a log line or an error message.
SECRET_KEYS = frozenset({"password", "token"})

# An option whose name contains one of these is hidden as well. This covers the
# options that name a secret file (`password_file`, `nkeys_seed`, `creds`) and
# misplaced nats-py settings such as `user_password`, which parsing rejects as unknown.
_SECRET_KEY_PARTS = ("pass", "token", "secret", "seed", "cred")

# Options whose value is a file path. An error shows such a path, even for a key in
# the secret list, unless the value looks like key material pasted in its place.
PATH_OPTIONS = frozenset(
    {
        "password_file",
        "token_file",
        "nkeys_seed",
        "creds",
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
    }
)

# The authentication and TLS options. The returner, runner and execution module pass
# them through to connect_options() like the engine does.
AUTH_OPTIONS = (
    "user",
    "password",
    "password_file",
    "token",
    "token_file",
    "nkeys_seed",
    "creds",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_server_name",
    "tls_handshake_first",
    "tls_verify",
)

SDB_PREFIX = "sdb://"
FILE_PREFIX = "file://"

HIDDEN = "<hidden>"

# Events skipped unless the operator opts back in with ``exclude_defaults: false``:
# key generation through the wheel returns a private key, job publications repeat
# the ``new`` event with the raw command, cluster events are internal traffic
# between the masters of a cluster, and ``salt-nats/`` carries the engine's own
# status requests and replies.
DEFAULT_EXCLUDE = (
    "salt/wheel/*/ret",
    "salt/job/*/publish",
    "cluster/*",
    "salt-nats/*",
)

MODES = ("core", "jetstream")
STREAM_RETENTIONS = ("limits", "interest", "workqueue")
STREAM_STORAGES = ("file", "memory")
FORMATS = ("json", "msgpack")
OVERSIZE_POLICIES = ("truncate", "drop")
BUFFER_FULL_POLICIES = ("drop_oldest", "drop_newest")
SERVER_SCHEMES = ("nats", "tls", "ws", "wss")

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# The user info of a URL, with or without a scheme: "nats://user:pass@host" or "user@host".
_USERINFO_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?[^/?#]*@")
_WEBSOCKET_SCHEMES = frozenset({"ws", "wss"})
# Salt's sdb URI: sdb://<profile>/<key>, where the key may contain further slashes.
_SDB_URI_RE = re.compile(r"^sdb://[^/\s]+/\S+$")
# An encoded NKEY seed: "S", the key type ("U" for a user), 56 more base32 characters.
NKEY_SEED_RE = re.compile(r"^S[A-Z][A-Z2-7]{56}$")
CREDS_JWT_MARKER = "BEGIN NATS USER JWT"
CREDS_SEED_MARKER = "BEGIN USER NKEY SEED"
_HOST_NAME_RE = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


class ConfigError(ValueError):
    """An engine option is unknown, of the wrong type or out of range."""

    def __init__(self, key: str, value: Any, problem: str, fix: str) -> None:
        shown = _shown_value(key, value)
        self.key = key
        # A hidden value is not kept either, so that no handler can print it by mistake.
        self.value = HIDDEN if shown == HIDDEN else value
        self.problem = problem
        self.fix = fix
        super().__init__(f"invalid option {key!r} = {shown}: {problem}. Fix: {fix}")


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in SECRET_KEYS or any(part in lowered for part in _SECRET_KEY_PARTS)


def _shown_value(key: str, value: Any) -> str:
    if key in PATH_OPTIONS:
        return repr(value) if is_plain_path(value) else HIDDEN
    if _is_secret_key(key):
        return HIDDEN
    return repr(value)


def is_plain_path(value: Any) -> bool:
    """Return True if ``value`` is an absolute path that is safe to show in a message.

    A seed, a JWT or PEM text pasted into a path option is not a plain path, and
    neither is an ``sdb://`` URI.
    """
    return (
        isinstance(value, str)
        and value.startswith("/")
        and "\n" not in value
        and "-----" not in value
        and len(value) <= 4096
    )


def looks_like_seed(value: str) -> bool:
    """Return True if ``value`` is an encoded NKEY seed, with surrounding whitespace."""
    return bool(NKEY_SEED_RE.match(value.strip()))


def looks_like_creds(value: str) -> bool:
    """Return True if ``value`` is the text of a credentials file, not its path."""
    return CREDS_JWT_MARKER in value


def _option(default: Any, help: str, kind: str, *, secret: bool = False, **extra: Any) -> Any:
    # A secret option stays out of the dataclass repr, so logging the settings
    # object with %r shows no password, token, seed or credentials text.
    metadata = {"help": help, "kind": kind, "secret": secret, **extra}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use an immutable default")
    return field(default=default, metadata=metadata, repr=not secret)


@dataclass(frozen=True)
class EngineSettings:
    """Settings of one engine instance (one ``engines:`` entry)."""

    servers: tuple[str, ...] = _option(
        ("nats://127.0.0.1:4222",),
        "NATS server URLs, tried in random order; the client learns the rest of a cluster "
        "from the server. A single string may list several URLs separated by commas.",
        "list of URLs",
    )
    name: str = _option(
        "",
        "Instance name, shown in log lines, status output and the NATS connection name "
        "(`salt-nats <name>@<master id>`). Defaults to the `engines:` entry name when "
        "`engine_module: nats` is used, else `nats`.",
        "string",
    )
    subject_prefix: str = _option(
        subjects.DEFAULT_EVENT_PREFIX,
        "Subject prefix; an event with tag T is published on `<subject_prefix>.<encoded T>`.",
        "subject",
    )
    mode: str = _option(
        "core",
        "Delivery mode. `core` publishes fire-and-forget on core NATS; `jetstream` waits for "
        "the stream's acknowledgement of each event and retries unacknowledged ones with the "
        "same `Nats-Msg-Id`, so the stream stores each event once.",
        "one of: " + ", ".join(MODES),
    )
    format: str = _option(
        "json",
        "Payload encoding: `json` (UTF-8 object with `tag` and `data`) or `msgpack`.",
        "one of: " + ", ".join(FORMATS),
    )
    include: tuple[str, ...] = _option(
        (),
        "Tag globs (fnmatch, as in Salt's `event_return_whitelist`) to forward. "
        "Empty forwards every tag that no exclude pattern matches.",
        "list of globs",
    )
    exclude: tuple[str, ...] = _option(
        (),
        "Tag globs never to forward, in addition to the default excludes.",
        "list of globs",
    )
    exclude_defaults: bool = _option(
        True,
        "Skip events that carry secrets or are internal: "
        + ", ".join(f"`{p}`" for p in DEFAULT_EXCLUDE)
        + ". Set to false to forward them; the `include` list does not override this.",
        "boolean",
    )
    max_subject_bytes: int = _option(
        subjects.DEFAULT_MAX_SUBJECT_BYTES,
        "Maximum subject length, in bytes. A longer tag is shortened to its leading "
        "tokens plus a hash token, and the full tag travels in the `Salt-Tag` header.",
        "integer, 64 to 3800",
    )
    oversize: str = _option(
        "truncate",
        "What to do with an event larger than the server's `max_payload` (payload plus "
        "headers): `truncate` replaces the largest values with a marker string and sets "
        "the `Salt-Nats-Truncated` header; `drop` skips the event. Both are counted.",
        "one of: " + ", ".join(OVERSIZE_POLICIES),
    )
    stream: str = _option(
        "SALT_EVENTS",
        "JetStream stream that stores the events (`mode: jetstream`).",
        "stream name",
    )
    stream_create: bool = _option(
        True,
        "Create the stream at start if it is missing, and update it when its config differs "
        "from the `stream_*` options. With false the engine only checks that it exists and "
        "captures the subject prefix.",
        "boolean",
    )
    stream_subjects: tuple[str, ...] = _option(
        (),
        "Subjects the stream captures. Empty means `<subject_prefix>.>`.",
        "list of subjects",
    )
    stream_retention: str = _option(
        "limits",
        "Stream retention policy.",
        "one of: " + ", ".join(STREAM_RETENTIONS),
    )
    stream_storage: str = _option(
        "file", "Stream storage.", "one of: " + ", ".join(STREAM_STORAGES)
    )
    stream_replicas: int = _option(1, "Stream replicas in a cluster.", "integer, 1 to 5")
    stream_max_age: float = _option(
        7 * 24 * 3600.0,
        "Longest time the stream keeps an event, in seconds; 0 keeps events until a size "
        "limit removes them.",
        "seconds",
    )
    stream_max_bytes: int = _option(
        -1,
        "Most bytes the stream keeps before it removes the oldest events; -1 for no limit. "
        "Accepts `10GiB` and the like.",
        "size in bytes, or -1",
    )
    stream_duplicate_window: float = _option(
        120.0,
        "Window in which the stream drops a second message with the same `Nats-Msg-Id`, in "
        "seconds. Retries within this window never store an event twice.",
        "seconds",
    )
    ack_timeout: float = _option(
        5.0,
        "Wait for the stream's acknowledgement of one event before it is published again, "
        "in seconds (`mode: jetstream`).",
        "seconds",
    )
    max_inflight: int = _option(
        1024,
        "Most events published and not yet acknowledged at one time (`mode: jetstream`).",
        "integer, 1 to 65536",
    )
    buffer_max_events: int = _option(
        10_000,
        "Maximum number of events held in memory while NATS is slow or unreachable.",
        "integer, at least 1",
    )
    buffer_max_bytes: int = _option(
        64 * 1024**2,
        "Maximum bytes of raw event frames held in memory; accepts `64MiB`, `512KB` and the like "
        "(K, M and G are powers of 1024).",
        "size in bytes, at least 1024",
    )
    buffer_full: str = _option(
        "drop_oldest",
        "Which event to drop when the buffer is full: `drop_oldest` keeps the newest events, "
        "`drop_newest` keeps the oldest. Drops are counted and logged.",
        "one of: " + ", ".join(BUFFER_FULL_POLICIES),
    )
    spool_dir: str = _option(
        "",
        "Folder of the disk spool. When set, events that cannot go to NATS (not connected, "
        "or the memory buffer is full) are appended to the spool and replayed in order once "
        "NATS is back, also after an engine or master restart. Empty disables the spool.",
        "path",
    )
    spool_max_bytes: int = _option(
        1024**3,
        "Maximum size of the spool on disk; accepts `1GiB`, `500MiB` and the like.",
        "size in bytes, at least 1MiB",
    )
    spool_full: str = _option(
        "drop_oldest",
        "Which records to drop when the spool is full: `drop_oldest` keeps the newest "
        "events, `drop_newest` keeps the oldest. Drops are counted as `spool_full`.",
        "one of: " + ", ".join(BUFFER_FULL_POLICIES),
    )
    spool_fsync_interval: float = _option(
        1.0,
        "Interval between fsync calls on the spool, in seconds. Records handed to the OS "
        "survive a killed engine at once; fsync makes them survive a machine crash too.",
        "seconds",
    )
    connect_timeout: float = _option(
        2.0, "Timeout of one TCP and handshake attempt to a server, in seconds.", "seconds"
    )
    reconnect_time_wait: float = _option(
        2.0,
        "Wait between two connect attempts to the same server, in seconds. The client "
        "retries forever, both for the first connect and after a disconnect.",
        "seconds",
    )
    reconnect_max_wait: float = _option(
        30.0,
        "Maximum wait between two attempts to build a new client, after a client closed "
        "for good or a first connect raised, in seconds.",
        "seconds",
    )
    ping_interval: float = _option(
        20.0,
        "Interval between client PINGs, in seconds; a server that misses "
        "`max_outstanding_pings` PONGs in a row is treated as gone and the client reconnects.",
        "seconds",
    )
    max_outstanding_pings: int = _option(
        2, "Unanswered PINGs before the connection counts as stale.", "integer, at least 1"
    )
    flush_timeout: float = _option(
        5.0,
        "Longest wait for the client to hand buffered messages to the socket, in seconds. "
        "A server that stops reading makes this time out instead of stalling the engine.",
        "seconds",
    )
    pending_size: int = _option(
        2 * 1024**2,
        "Size of nats-py's own outgoing buffer, in bytes. The engine publishes only while "
        "connected and keeps everything else in its own buffer.",
        "size in bytes, at least 65536",
    )
    user: str = _option(
        "",
        "User name for user and password authentication; needs `password` or "
        "`password_file`. Empty means no user. Accepts an `sdb://profile/key` URI.",
        "string",
    )
    password: str = _option(
        "",
        "Password of `user`: the password itself, `file:///absolute/path` of a file that "
        "contains it, or an `sdb://profile/key` URI. Never logged.",
        "string or URI",
        secret=True,
    )
    password_file: str = _option(
        "",
        "Absolute path of a file that contains the password of `user`. The file is read "
        "at each connect, so a changed password takes effect at the next reconnect.",
        "path",
    )
    token: str = _option(
        "",
        "Authentication token: the token itself, `file:///absolute/path` of a file that "
        "contains it, or an `sdb://profile/key` URI. Never logged. Cannot be combined "
        "with `user`.",
        "string or URI",
        secret=True,
    )
    token_file: str = _option(
        "",
        "Absolute path of a file that contains the token; read at each connect.",
        "path",
    )
    nkeys_seed: str = _option(
        "",
        "NKEY authentication: absolute path of a file that contains the user's seed "
        "(`SU...`), or the seed itself, as an `sdb://` URI returns it. The server lists the "
        "user's public key (`U...`). Cannot be combined with `creds`.",
        "path or seed",
        secret=True,
    )
    creds: str = _option(
        "",
        "JWT authentication (operator mode): absolute path of a credentials file that "
        "contains the user's JWT and NKEY seed, as `nsc` and `nats` write it, or the text of "
        "that file, as an `sdb://` URI returns it.",
        "path or text",
        secret=True,
    )
    tls_ca_file: str = _option(
        "",
        "Absolute path of a PEM file with the CA certificates that verify the server's "
        "certificate. Empty uses the system's default CA certificates.",
        "path",
    )
    tls_cert_file: str = _option(
        "",
        "Absolute path of the PEM client certificate for mutual TLS (server `tls { verify: "
        "true }`); needs `tls_key_file`. A chain file may follow the certificate with the "
        "intermediate CA certificates.",
        "path",
    )
    tls_key_file: str = _option(
        "",
        "Absolute path of the unencrypted PEM private key of `tls_cert_file`.",
        "path",
    )
    tls_server_name: str = _option(
        "",
        "Host name sent in TLS SNI and checked against the server's certificate, for "
        "servers reached by IP address or by another name. Empty uses the host of each "
        "server URL. Not used with `ws://` or `wss://` servers.",
        "host name",
    )
    tls_handshake_first: bool = _option(
        False,
        "Start TLS right after the TCP connect, before the server sends its INFO line. "
        "The server needs `tls { handshake_first: true }`.",
        "boolean",
    )
    tls_verify: bool = _option(
        True,
        "Verify the server's certificate and host name. With false, any certificate is "
        "accepted, so anyone in the network path can pose as the server; the engine logs "
        "a warning at every start.",
        "boolean",
    )
    shutdown_timeout: float = _option(
        4.0,
        "Time allowed on SIGTERM to publish buffered events and flush, in seconds. The master "
        "kills an engine 5 seconds after SIGTERM, so keep this below 5.",
        "seconds, 0.1 to 4.9",
    )
    heartbeat_interval: float = _option(
        10.0,
        "Interval at which the instance writes its status to `status_dir`, in seconds. "
        "`salt-run nats.status` reports an instance whose last write is older than three "
        "intervals as down.",
        "seconds, 1 to 3600",
    )
    status_dir: str = _option(
        "",
        "Folder of the status files. Empty means `salt-nats` under the master's `cachedir`.",
        "path",
    )
    inbound: InboundSettings | None = _option(  # noqa: RUF009 - _option returns a field()
        None,
        "Bridge from NATS into the master bus, off by default: a mapping with `subjects` "
        "(NATS subjects to subscribe to) and optionally `tag_prefix` (default "
        "`nats/inbound/`, may not start with `salt`), `queue_group`, `durable` and "
        "`stream` (a durable JetStream consumer), `max_bytes` (default 65536), `rate` "
        "(events per second, default 100) and `burst` (default 200). See the security page.",
        "mapping",
    )
    micro_service: bool = _option(
        True,
        "Register the NATS micro service `salt-nats` with a `status` endpoint, so "
        "`nats micro info salt-nats` and `nats micro stats salt-nats` work.",
        "boolean",
    )
    drop_log_interval: float = _option(
        60.0,
        "After the first warning for a kind of drop, further drops of that kind are summed "
        "and logged at most once per this many seconds.",
        "seconds",
    )

    @property
    def effective_stream_subjects(self) -> tuple[str, ...]:
        """Return the subjects the stream captures: ``stream_subjects`` or ``<prefix>.>``."""
        return self.stream_subjects or (f"{self.subject_prefix}.>",)

    @property
    def excluded_globs(self) -> tuple[str, ...]:
        """Return the effective exclude list: the defaults (unless disabled) and `exclude`."""
        if self.exclude_defaults:
            return DEFAULT_EXCLUDE + self.exclude
        return self.exclude

    @property
    def auth_method(self) -> str:
        """The authentication method: none, user, token, nkey or creds.

        A token sent along with an NKEY or JWT, as auth callout servers accept, shows
        as ``nkey+token`` or ``creds+token``.
        """
        methods = []
        if self.user:
            methods.append("user")
        if self.nkeys_seed:
            methods.append("nkey")
        if self.creds:
            methods.append("creds")
        if self.token or self.token_file:
            methods.append("token")
        return "+".join(methods) or "none"

    @property
    def tls_summary(self) -> str:
        """The TLS options in use, such as ``ca,client-cert``; ``default`` if none is set.

        With ``default``, nats-py starts TLS only when the server requires it and
        checks the certificate against the system's CA certificates.
        """
        parts = []
        if self.tls_ca_file:
            parts.append("ca")
        if self.tls_cert_file:
            parts.append("client-cert")
        if self.tls_server_name:
            parts.append(f"server-name={self.tls_server_name}")
        if self.tls_handshake_first:
            parts.append("handshake-first")
        if not self.tls_verify:
            parts.append("no-verify")
        return ",".join(parts) or "default"

    def describe(self) -> str:
        """Return a one-line summary for the start log line; it contains no secrets."""
        return (
            f"name={self.name} servers={','.join(redact_url(s) for s in self.servers)} "
            f"prefix={self.subject_prefix} mode={self.mode} format={self.format} "
            f"auth={self.auth_method} tls={self.tls_summary}"
        )


def redact_url(url: str) -> str:
    """Return the URL with any user info (user, password or token) replaced by ``***``.

    Works on text only, so it also redacts a URL without a scheme or with an invalid
    port, and keeps the host and port as written.
    """
    return _USERINFO_RE.sub(r"\g<scheme>***@", url, count=1)


# Parsers take (key, value) and return the typed value or raise ConfigError.


def _parse_str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, value, "expected a string", f"quote the value of {key}")
    return value


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "false", "no", "off"):
        return value.lower() in ("true", "yes", "on")
    raise ConfigError(key, value, "expected a boolean", f"set {key} to true or false")


def _parse_int(key: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            value = int(value)
        except ValueError:
            raise ConfigError(
                key, value, "expected a whole number", f"set {key} to an integer"
            ) from None
    if value < minimum or (maximum is not None and value > maximum):
        limits = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(key, value, "out of range", f"set {key} to a value {limits}")
    return value


def _parse_seconds(key: str, value: Any, minimum: float, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(key, value, "expected a number of seconds", f"set {key} to e.g. 2.5")
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(
            key, value, "expected a number of seconds", f"set {key} to e.g. 2.5"
        ) from None
    too_large = maximum is not None and seconds > maximum
    if not math.isfinite(seconds) or seconds < minimum or too_large:
        limits = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(key, value, "out of range", f"set {key} to a value {limits} seconds")
    return seconds


def parse_size(key: str, value: Any, minimum: int) -> int:
    """Parse a byte size given as an integer or a string such as ``64MiB`` or ``512K``."""
    if isinstance(value, bool):
        raise ConfigError(key, value, "expected a size in bytes", f"set {key} to e.g. 64MiB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE_RE.match(value)):
        number, unit = match.groups()
        size = int(float(number) * _SIZE_UNITS[(unit or "")[:1].lower()])
    else:
        raise ConfigError(key, value, "expected a size in bytes", f"set {key} to e.g. 64MiB")
    if size < minimum:
        raise ConfigError(key, value, "too small", f"set {key} to at least {minimum} bytes")
    return size


def _parse_choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.lower() in choices:
        return value.lower()
    raise ConfigError(key, value, "not a known value", f"set {key} to one of: {', '.join(choices)}")


def _parse_str_list(key: str, value: Any, split_commas: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")] if split_commas else [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigError(key, value, "expected a list of strings", f"write {key} as a YAML list")
    for item in items:
        if not isinstance(item, str) or not item:
            raise ConfigError(
                key, value, f"item {item!r} is not a non-empty string", f"quote each item of {key}"
            )
    return tuple(items)


def _redact_servers(value: Any) -> Any:
    if isinstance(value, str):
        return ",".join(redact_url(url) for url in value.split(","))
    if isinstance(value, (list, tuple)):
        return [redact_url(url) if isinstance(url, str) else url for url in value]
    return value


def _parse_servers(key: str, value: Any) -> tuple[str, ...]:
    # Every error shows the value through _redact_servers or redact_url, because a
    # server URL may carry a user and password.
    try:
        servers = _parse_str_list(key, value, split_commas=True)
    except ConfigError as exc:
        raise ConfigError(key, _redact_servers(value), exc.problem, exc.fix) from None
    if not servers:
        raise ConfigError(
            key, value, "no server URL given", "list at least one server, such as nats://host:4222"
        )

    schemes = set()
    for url in servers:
        try:
            parts = urlsplit(url if "://" in url else f"nats://{url}")
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        except ValueError:
            raise ConfigError(
                key,
                redact_url(url),
                "invalid host or port",
                "write each server as nats://host:4222",
            ) from None
        if parts.scheme not in SERVER_SCHEMES or not parts.hostname:
            raise ConfigError(
                key,
                redact_url(url),
                "not a NATS server URL",
                "write each server as nats://host:4222 (or tls://, ws://, wss://)",
            )
        schemes.add(parts.scheme)

    if schemes & _WEBSOCKET_SCHEMES and schemes - _WEBSOCKET_SCHEMES:
        raise ConfigError(
            key,
            _redact_servers(value),
            "mixes WebSocket URLs (ws://, wss://) with nats:// or tls:// URLs",
            "use one kind of URL for every server, because nats-py rejects a mixed list",
        )
    return tuple(s if "://" in s else f"nats://{s}" for s in servers)


def _parse_prefix(key: str, value: Any) -> str:
    prefix = _parse_str(key, value)
    try:
        subjects.validate_prefix(prefix)
    except ValueError as exc:
        raise ConfigError(
            key, value, str(exc), "use dot-separated tokens such as salt.events"
        ) from None
    return prefix


def _parse_name(key: str, value: Any) -> str:
    name = _parse_str(key, value)
    if name and not _NAME_RE.match(name):
        raise ConfigError(
            key,
            value,
            "must be 1 to 64 letters, digits, '.', '_' or '-'",
            "choose a short name such as prod-bus",
        )
    return name


_STREAM_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def _parse_stream_name(key: str, value: Any) -> str:
    name = _parse_str(key, value)
    if not _STREAM_NAME_RE.match(name):
        raise ConfigError(
            key,
            value,
            "a stream name may contain only letters, digits, '_' and '-'",
            "choose a name such as SALT_EVENTS",
        )
    return name


def _parse_stream_max_bytes(key: str, value: Any) -> int:
    if value == -1 or value == "-1":
        return -1
    return parse_size(key, value, 1024)


def _parse_user(key: str, value: Any) -> str:
    user = _parse_str(key, value)
    if user != user.strip() or "\n" in user:
        raise ConfigError(
            key, value, "contains leading or trailing whitespace", f"remove it from {key}"
        )
    return user


def _parse_secret(key: str, value: Any) -> str:
    """Parse a secret given inline, as ``file:///absolute/path`` or as an sdb URI."""
    secret = _parse_str(key, value)
    if secret.startswith(SDB_PREFIX) and not _SDB_URI_RE.match(secret):
        raise ConfigError(
            key, value, "not a valid sdb URI", f"write {key} as sdb://<profile>/<key>"
        )
    if secret.startswith(FILE_PREFIX):
        path = secret[len(FILE_PREFIX) :]
        if not path.startswith("/"):
            raise ConfigError(
                key,
                value,
                "a file:// URI needs an absolute path",
                f"write {key} as file:///absolute/path (three slashes)",
            )
    return secret


def _parse_path(key: str, value: Any) -> str:
    path = _parse_str(key, value)
    if path and not is_plain_path(path):
        raise ConfigError(
            key,
            value,
            "not an absolute path",
            f"set {key} to the file's absolute path, because a relative path would depend "
            "on the working directory of the Salt process",
        )
    return path


def _parse_seed(key: str, value: Any) -> str:
    seed = _parse_str(key, value)
    if not seed or seed.startswith(SDB_PREFIX) or looks_like_seed(seed):
        return _parse_secret(key, seed)
    if not is_plain_path(seed):
        raise ConfigError(
            key,
            value,
            "neither an absolute path, an NKEY seed nor an sdb:// URI",
            f"set {key} to the absolute path of the user's seed file, such as "
            "/etc/salt/pki/nats/user.nk",
        )
    return seed


def _parse_creds(key: str, value: Any) -> str:
    creds = _parse_str(key, value)
    if not creds or creds.startswith(SDB_PREFIX) or looks_like_creds(creds):
        return _parse_secret(key, creds)
    if not is_plain_path(creds):
        raise ConfigError(
            key,
            value,
            "neither an absolute path, the text of a credentials file nor an sdb:// URI",
            f"set {key} to the absolute path of the .creds file, such as "
            "/etc/salt/pki/nats/salt.creds",
        )
    return creds


def _parse_host_name(key: str, value: Any) -> str:
    name = _parse_str(key, value)
    if name and not _HOST_NAME_RE.match(name):
        raise ConfigError(
            key,
            value,
            "not a valid host name",
            f"set {key} to the DNS name in the server's certificate, such as nats.example.com",
        )
    return name


def _parse_inbound(key: str, value: Any) -> InboundSettings | None:
    if value is None:
        return None
    try:
        return parse_inbound_settings(value)
    except InboundConfigError as exc:
        raise ConfigError(
            key, value, str(exc), "see the inbound options on the security page"
        ) from None


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "servers": _parse_servers,
    "name": _parse_name,
    "subject_prefix": _parse_prefix,
    "mode": lambda k, v: _parse_choice(k, v, MODES),
    "format": lambda k, v: _parse_choice(k, v, FORMATS),
    "include": _parse_str_list,
    "exclude": _parse_str_list,
    "exclude_defaults": _parse_bool,
    "stream": _parse_stream_name,
    "stream_create": _parse_bool,
    "stream_subjects": _parse_str_list,
    "stream_retention": lambda k, v: _parse_choice(k, v, STREAM_RETENTIONS),
    "stream_storage": lambda k, v: _parse_choice(k, v, STREAM_STORAGES),
    "stream_replicas": lambda k, v: _parse_int(k, v, 1, 5),
    "stream_max_age": lambda k, v: _parse_seconds(k, v, 0.0),
    "stream_max_bytes": _parse_stream_max_bytes,
    "stream_duplicate_window": lambda k, v: _parse_seconds(k, v, 0.1),
    "ack_timeout": lambda k, v: _parse_seconds(k, v, 0.1),
    "max_inflight": lambda k, v: _parse_int(k, v, 1, 65536),
    "max_subject_bytes": lambda k, v: _parse_int(k, v, 64, 3800),
    "oversize": lambda k, v: _parse_choice(k, v, OVERSIZE_POLICIES),
    "buffer_max_events": lambda k, v: _parse_int(k, v, 1),
    "buffer_max_bytes": lambda k, v: parse_size(k, v, 1024),
    "buffer_full": lambda k, v: _parse_choice(k, v, BUFFER_FULL_POLICIES),
    "spool_dir": _parse_str,
    "spool_max_bytes": lambda k, v: parse_size(k, v, 1024**2),
    "spool_full": lambda k, v: _parse_choice(k, v, BUFFER_FULL_POLICIES),
    "spool_fsync_interval": lambda k, v: _parse_seconds(k, v, 0.0),
    "connect_timeout": lambda k, v: _parse_seconds(k, v, 0.1),
    "reconnect_time_wait": lambda k, v: _parse_seconds(k, v, 0.0),
    "reconnect_max_wait": lambda k, v: _parse_seconds(k, v, 0.1),
    "ping_interval": lambda k, v: _parse_seconds(k, v, 0.1),
    "max_outstanding_pings": lambda k, v: _parse_int(k, v, 1),
    "flush_timeout": lambda k, v: _parse_seconds(k, v, 0.1),
    "pending_size": lambda k, v: parse_size(k, v, 65536),
    "shutdown_timeout": lambda k, v: _parse_seconds(k, v, 0.1, 4.9),
    "drop_log_interval": lambda k, v: _parse_seconds(k, v, 0.0),
    "heartbeat_interval": lambda k, v: _parse_seconds(k, v, 1.0, 3600.0),
    "status_dir": _parse_str,
    "micro_service": _parse_bool,
    "inbound": _parse_inbound,
    "user": _parse_user,
    "password": _parse_secret,
    "password_file": _parse_path,
    "token": _parse_secret,
    "token_file": _parse_path,
    "nkeys_seed": _parse_seed,
    "creds": _parse_creds,
    "tls_ca_file": _parse_path,
    "tls_cert_file": _parse_path,
    "tls_key_file": _parse_path,
    "tls_server_name": _parse_host_name,
    "tls_handshake_first": _parse_bool,
    "tls_verify": _parse_bool,
}


def parse_engine_settings(
    options: Mapping[str, Any] | None, default_name: str = "nats"
) -> EngineSettings:
    """Build :class:`EngineSettings` from the engine's keyword arguments.

    Raises :class:`ConfigError` on the first unknown or invalid option.
    """
    options = dict(options or {})
    known = {f.name for f in dataclasses.fields(EngineSettings)}
    for key in options:
        if key not in known:
            guess = difflib.get_close_matches(str(key), sorted(known), n=1)
            fix = f"did you mean {guess[0]!r}?" if guess else "remove it."
            valid = ", ".join(sorted(known))
            raise ConfigError(
                str(key), options[key], "unknown option", f"{fix} Valid options: {valid}"
            )

    values = {key: _PARSERS[key](key, value) for key, value in options.items()}
    if not values.get("name"):
        values["name"] = default_name

    settings = EngineSettings(**values)
    _check_combination(settings)
    return settings


def parse_option(key: str, value: Any) -> Any:
    """Parse one option the way the engine does; the returner and runner share these rules.

    Raises :class:`ConfigError` for an unknown key or an invalid value.
    """
    parser = _PARSERS.get(key)
    if parser is None:
        raise ConfigError(key, value, "unknown option", "remove it")
    return parser(key, value)


def _check_combination(settings: EngineSettings) -> None:
    try:
        subjects.validate_subject_settings(settings.subject_prefix, settings.max_subject_bytes)
    except ValueError as exc:
        raise ConfigError(
            "subject_prefix",
            settings.subject_prefix,
            str(exc),
            "shorten the prefix or raise max_subject_bytes",
        ) from None
    probe = f"{settings.subject_prefix}.salt"
    if settings.stream_subjects and not any(
        subjects.subject_matches(pattern, probe) for pattern in settings.stream_subjects
    ):
        raise ConfigError(
            "stream_subjects",
            list(settings.stream_subjects),
            f"none of them captures the events published under {settings.subject_prefix}",
            f"add {settings.subject_prefix}.> or leave stream_subjects empty",
        )
    if settings.reconnect_max_wait < settings.reconnect_time_wait:
        raise ConfigError(
            "reconnect_max_wait",
            settings.reconnect_max_wait,
            f"shorter than reconnect_time_wait ({settings.reconnect_time_wait})",
            "set reconnect_max_wait to at least reconnect_time_wait",
        )
    check_auth_options(settings)


def check_auth_options(settings: EngineSettings) -> None:
    """Raise :class:`ConfigError` for authentication or TLS options that do not combine.

    nats-py sends only one set of credentials and ignores the others without a word,
    so each rejected pair names the option to remove.
    """
    for inline, path in (("password", "password_file"), ("token", "token_file")):
        if getattr(settings, inline) and getattr(settings, path):
            raise ConfigError(
                path,
                getattr(settings, path),
                f"{inline} is set as well",
                f"keep one of {inline} and {path}",
            )

    has_password = bool(settings.password or settings.password_file)
    has_token = bool(settings.token or settings.token_file)
    password_key = "password" if settings.password else "password_file"
    token_key = "token" if settings.token else "token_file"

    if settings.user and not has_password:
        raise ConfigError(
            "user", settings.user, "no password given", "set password or password_file"
        )
    if has_password and not settings.user:
        raise ConfigError(
            password_key,
            getattr(settings, password_key),
            "a password needs a user",
            "set user, or use token for token authentication",
        )
    if has_token and settings.user:
        raise ConfigError(
            token_key,
            getattr(settings, token_key),
            "token and user are both set",
            "nats-server accepts either a token or a user and password: remove one",
        )
    if settings.nkeys_seed and settings.creds:
        raise ConfigError(
            "nkeys_seed",
            settings.nkeys_seed,
            "nkeys_seed and creds are both set",
            "a credentials file contains the user's seed already: remove nkeys_seed",
        )
    signed = "creds" if settings.creds else "nkeys_seed"
    if (settings.creds or settings.nkeys_seed) and settings.user:
        raise ConfigError(
            "user",
            settings.user,
            f"user and {signed} are both set",
            f"nats-py would send only the {signed} signature: remove user and password",
        )

    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        missing_key = "tls_key_file" if settings.tls_cert_file else "tls_cert_file"
        set_key = "tls_cert_file" if settings.tls_cert_file else "tls_key_file"
        raise ConfigError(
            set_key,
            getattr(settings, set_key),
            f"mutual TLS needs both a certificate and its key, and {missing_key} is not set",
            f"set {missing_key} as well, or remove {set_key}",
        )

    _check_server_urls(settings)


def _check_server_urls(settings: EngineSettings) -> None:
    has_credentials = settings.auth_method != "none"
    websocket = any(urlsplit(url).scheme in _WEBSOCKET_SCHEMES for url in settings.servers)
    for url in settings.servers:
        if has_credentials and _USERINFO_RE.match(url):
            raise ConfigError(
                "servers",
                redact_url(url),
                f"the URL contains a user or token, and {settings.auth_method} "
                "authentication is set as well",
                "remove the user info from the URL and keep the authentication options",
            )

    if not websocket:
        return
    for key in ("tls_server_name", "tls_handshake_first"):
        if getattr(settings, key):
            raise ConfigError(
                key,
                getattr(settings, key),
                "has no effect with ws:// or wss:// servers",
                f"remove {key}; with wss:// the host name of the URL is checked",
            )
    plain_websocket = all(urlsplit(url).scheme == "ws" for url in settings.servers)
    tls_files = [key for key in ("tls_ca_file", "tls_cert_file") if getattr(settings, key)]
    if plain_websocket and (tls_files or not settings.tls_verify):
        key = tls_files[0] if tls_files else "tls_verify"
        raise ConfigError(
            key,
            getattr(settings, key),
            "TLS options have no effect with ws:// servers, which never use TLS",
            "use wss:// server URLs, or remove the TLS options",
        )


def options_reference() -> str:
    """Return the Markdown table of every engine option, its type, default and meaning."""
    lines = ["| Option | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for f in dataclasses.fields(EngineSettings):
        default = f.default
        if isinstance(default, tuple):
            shown = "[" + ", ".join(f'"{d}"' for d in default) + "]"
        elif isinstance(default, bool):
            shown = str(default).lower()
        elif default == "":
            shown = "(see description)"
        else:
            shown = str(default)
        lines.append(f"| `{f.name}` | {f.metadata['kind']} | `{shown}` | {f.metadata['help']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(options_reference())
