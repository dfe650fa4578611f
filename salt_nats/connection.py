"""nats-py connection options and a supervisor that keeps one client connected.

Authentication maps to nats-py's ``connect()`` arguments as follows:

* ``user`` with ``password`` or ``password_file``: ``user`` and ``password``.
* ``token`` or ``token_file``: ``token``.
* ``nkeys_seed``: ``nkeys_seed`` for a path, ``nkeys_seed_str`` for the seed itself.
* ``creds``: ``user_credentials``, a path or a ``RawCredentials`` with the file's text.
* TLS options: ``tls`` (an ``ssl.SSLContext``), ``tls_hostname`` and
  ``tls_handshake_first``.

A secret that comes from a file (``password_file``, ``token_file``, a ``file://`` URI)
is passed as a callable that reads the file at each connect. So a changed secret is
used from the next reconnect on. nats-py reads ``nkeys_seed`` and ``creds`` paths at
each connect as well. ``sdb://`` URIs must be resolved first, by
:func:`salt_nats.secrets.resolve_secrets`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client, RawCredentials
from nats.errors import Error as NatsError

from salt_nats.config import (
    FILE_PREFIX,
    SDB_PREFIX,
    ConfigError,
    EngineSettings,
    looks_like_creds,
    looks_like_seed,
    redact_url,
)
from salt_nats.status import RateLimitedLog, Stats

log = logging.getLogger(__name__)


class SecretFile:
    """A callable that returns the secret stored in a file, read anew at each call.

    nats-py calls ``user``, ``password`` and ``token`` callables each time it sends
    CONNECT. A trailing line break is removed. The repr shows the option and the
    path, never the content.
    """

    def __init__(self, key: str, path: str) -> None:
        self.key = key
        self.path = path

    def __repr__(self) -> str:
        return f"SecretFile({self.key!r}, {self.path!r})"

    def __call__(self) -> str:
        # An OSError (file missing or unreadable) names only the path. nats-py
        # reports it through error_cb and tries again, as it does for a failed connect.
        with open(self.path, encoding="utf-8") as handle:
            secret = handle.read().rstrip("\r\n")
        if not secret:
            raise NatsError(f"nats: the {self.key} file {self.path} is empty")
        return secret


def connect_options(settings: EngineSettings, connection_name: str) -> dict[str, Any]:
    """Return the keyword arguments for ``nats.connect`` (without callbacks).

    Raises :class:`ConfigError` if a secret is still an ``sdb://`` URI, and OSError
    or ``ssl.SSLError`` if a TLS file cannot be loaded.
    """
    return {
        "servers": list(settings.servers),
        "name": connection_name,
        "allow_reconnect": True,
        # -1 retries forever, both for the first connect and after a disconnect.
        "max_reconnect_attempts": -1,
        "connect_timeout": settings.connect_timeout,
        "reconnect_time_wait": settings.reconnect_time_wait,
        "ping_interval": settings.ping_interval,
        "max_outstanding_pings": settings.max_outstanding_pings,
        "flush_timeout": settings.flush_timeout,
        "pending_size": settings.pending_size,
        # The engine never subscribes to what it publishes.
        "no_echo": True,
        **auth_options(settings),
        **tls_options(settings),
    }


def auth_options(settings: EngineSettings) -> dict[str, Any]:
    """Return the nats-py authentication arguments for ``settings``."""
    options: dict[str, Any] = {}
    if settings.user:
        options["user"] = _inline_secret("user", settings.user)
        options["password"] = _secret("password", settings.password, settings.password_file)
    if settings.token or settings.token_file:
        options["token"] = _secret("token", settings.token, settings.token_file)

    if settings.nkeys_seed:
        seed = _inline_secret("nkeys_seed", settings.nkeys_seed)
        if looks_like_seed(seed):
            options["nkeys_seed_str"] = seed.strip()
        else:
            options["nkeys_seed"] = seed

    if settings.creds:
        creds = _inline_secret("creds", settings.creds)
        # NOTE: nats-py 2.16 reads a creds file at every connect and loops forever
        # on a file without a user JWT, which blocks the event loop. The file is
        # checked at start (salt_nats.secrets), but not when it changes later.
        options["user_credentials"] = RawCredentials(creds) if looks_like_creds(creds) else creds
    return options


def _secret(key: str, inline: str, path: str) -> str | SecretFile:
    if path:
        return SecretFile(f"{key}_file", path)
    if inline.startswith(FILE_PREFIX):
        return SecretFile(key, inline[len(FILE_PREFIX) :])
    return _inline_secret(key, inline)


def _inline_secret(key: str, value: str) -> str:
    if value.startswith(SDB_PREFIX):
        raise ConfigError(
            key,
            value,
            "the sdb:// URI was not resolved",
            "check that the sdb profile is defined in the Salt config; a program that "
            "builds the settings itself calls salt_nats.secrets.resolve_secrets() first",
        )
    return value


def tls_options(settings: EngineSettings) -> dict[str, Any]:
    """Return the nats-py TLS arguments for ``settings``; empty if no TLS option is set.

    Without them, nats-py starts TLS only when the server requires it, and verifies
    the server against the system's CA certificates.

    NOTE: nats-py 2.16 starts TLS only when the server's INFO line sets
    ``tls_required``, also for ``tls://`` URLs. A server, or anyone in the network
    path, that leaves it out receives a password or token in clear text. With
    ``tls_handshake_first`` the client starts TLS before it reads anything.
    """
    options: dict[str, Any] = {}
    context = ssl_context(settings)
    if context is not None:
        options["tls"] = context
    if settings.tls_server_name:
        options["tls_hostname"] = settings.tls_server_name
    if settings.tls_handshake_first:
        options["tls_handshake_first"] = True
    return options


def ssl_context(settings: EngineSettings) -> ssl.SSLContext | None:
    """Build the client's SSL context from the TLS options, or return None if none is set.

    Raises OSError if a file cannot be read and ``ssl.SSLError`` if its content is
    not a valid certificate or key, or the key does not match the certificate.
    """
    if not (settings.tls_ca_file or settings.tls_cert_file or not settings.tls_verify):
        return None

    # With a CA file, only that file's CA certificates are trusted, not the system's.
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=settings.tls_ca_file or None
    )
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.tls_cert_file:
        context.load_cert_chain(
            settings.tls_cert_file, settings.tls_key_file, password=_reject_encrypted_key
        )
    return context


def _reject_encrypted_key() -> str:
    # Called by OpenSSL only for an encrypted key. Without this callback OpenSSL
    # would prompt for the passphrase on the terminal.
    raise ValueError("the private key in tls_key_file is encrypted; decrypt it first")


def connection_hint(exc: BaseException, settings: EngineSettings) -> str:
    """Return advice for a connect error whose own message does not say what to change.

    The result starts with "; " so it can follow the error in a log line, or is
    empty when there is no advice.
    """
    text = str(exc).lower()
    if "authorization violation" in text and settings.auth_method == "none":
        return "; the server requires credentials: set user, token, nkeys_seed or creds"
    if "authorization violation" in text:
        return (
            f"; the server rejected the {settings.auth_method} credentials: check them "
            "against the user's entry in the server config"
        )
    if "certificate verify failed" in text:
        return (
            "; the server's certificate did not verify: check tls_ca_file, and set "
            "tls_server_name when the server URL's host is not named in the certificate"
        )
    if "expecting info" in text and not settings.tls_handshake_first:
        return "; if the server has tls { handshake_first: true }, set tls_handshake_first"
    return ""


def wants_tls(settings: EngineSettings) -> bool:
    """Return True when the settings ask for TLS: a tls:// server or any TLS file option."""
    if any(server.startswith("tls://") for server in settings.servers):
        return True
    return bool(settings.tls_ca_file or settings.tls_cert_file or settings.tls_handshake_first)


def server_requires_tls(client: Client) -> bool:
    """Return True when the connected server made the client use TLS."""
    if client.options.get("tls_handshake_first"):
        return True
    # NOTE: nats-py 2.16 has no public way to tell whether a connection uses TLS. It
    # upgrades to TLS only when the server's INFO sets tls_required and otherwise
    # stays in plain text even for a tls:// URL, so this reads that INFO field. The
    # CONNECT with the credentials has been sent by then; tls_handshake_first avoids
    # that.
    server_info = getattr(client, "_server_info", None) or {}
    return bool(server_info.get("tls_required"))


def security_warnings(settings: EngineSettings) -> list[str]:
    """Return a warning for each option that weakens the connection's security."""
    warnings = []
    if not settings.tls_verify:
        warnings.append(
            "tls_verify is false, so the NATS server's certificate and host name are not "
            "checked: anyone in the network path can pose as the server and read the "
            "events and the credentials"
        )
    return warnings


class NatsSupervisor:
    """Connect to NATS in the background and rebuild the client if it ever closes.

    nats-py reconnects by itself after a disconnect; a client only ends up closed
    after an error it treats as fatal, or when ``close()`` is called. The supervisor
    makes a new client in the first case, waiting longer after each failure, up to
    ``reconnect_max_wait`` seconds.
    """

    def __init__(
        self,
        settings: EngineSettings,
        stats: Stats,
        connection_name: str,
        on_ready: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.connection_name = connection_name
        self.on_ready = on_ready
        self.client: Client | None = None
        self._closed_event = asyncio.Event()
        self._stopping = False
        self._error_log = RateLimitedLog(
            log, settings.drop_log_interval, prefix=f"salt-nats {settings.name}"
        )

    @property
    def connected_client(self) -> Client | None:
        """Return the client if it is connected now, else None."""
        client = self.client
        if client is not None and client.is_connected:
            return client
        return None

    @property
    def state(self) -> str:
        """One of connected, reconnecting, connecting or stopped."""
        if self._stopping:
            return "stopped"
        client = self.client
        if client is None:
            return "connecting"
        if client.is_connected:
            return "connected"
        return "reconnecting"

    @property
    def connected_url(self) -> str | None:
        """Return the URL of the server the client is connected to, without user info."""
        client = self.connected_client
        if client is None or client.connected_url is None:
            return None
        return redact_url(client.connected_url.geturl())

    async def run(self) -> None:
        """Keep a client connected until :meth:`close` is called."""
        for warning in security_warnings(self.settings):
            log.warning("salt-nats %s: %s", self.settings.name, warning)

        backoff = max(self.settings.reconnect_time_wait, 0.1)
        while not self._stopping:
            self._closed_event.clear()
            client = Client()
            try:
                # With max_reconnect_attempts=-1, connect() keeps trying every
                # server until one accepts the connection; failures reach _on_error meanwhile.
                await client.connect(
                    **connect_options(self.settings, self.connection_name),
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                )
            except asyncio.CancelledError:
                await close_quietly(client)
                raise
            except Exception as exc:  # nats-py raises many types here
                self.stats.nats_errors += 1
                self.stats.record_error(f"connect failed: {exc!r}")
                log.warning(
                    "salt-nats %s: connecting to NATS failed: %r%s; retrying in %.1f s",
                    self.settings.name,
                    exc,
                    connection_hint(exc, self.settings),
                    backoff,
                )
                await close_quietly(client)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.reconnect_max_wait)
                continue

            if wants_tls(self.settings) and not server_requires_tls(client):
                message = (
                    f"the NATS server {redact_url(client.connected_url.geturl())} does not "
                    "require TLS, so nats-py would send the events in plain text although "
                    "TLS is configured; enable TLS on the server or set tls_handshake_first"
                )
                self.stats.nats_errors += 1
                self.stats.record_error(message)
                log.error(
                    "salt-nats %s: %s; retrying in %.1f s", self.settings.name, message, backoff
                )
                await close_quietly(client)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.reconnect_max_wait)
                continue

            self.client = client
            self.stats.nats_connects += 1
            backoff = max(self.settings.reconnect_time_wait, 0.1)
            log.info(
                "salt-nats %s: connected to NATS server %s (version %s, max_payload %d bytes)",
                self.settings.name,
                self.connected_url,
                _version(client),
                client.max_payload,
            )
            self.on_ready()
            await self._closed_event.wait()
            if not self._stopping:
                log.warning(
                    "salt-nats %s: the NATS client closed (%r); building a new one",
                    self.settings.name,
                    client.last_error,
                )
                self.client = None

    async def close(self, flush_timeout: float) -> None:
        """Flush what the client holds, within ``flush_timeout`` seconds, and close it."""
        self._stopping = True
        self._closed_event.set()
        client = self.client
        if client is None or client.is_closed:
            return
        if client.is_connected and flush_timeout > 0:
            try:
                await client.flush(timeout=max(flush_timeout, 0.05))
            except Exception as exc:  # best effort at shutdown
                log.warning("salt-nats %s: final flush to NATS failed: %r", self.settings.name, exc)
        await close_quietly(client)

    # nats-py callbacks. They must not raise: nats-py logs and swallows nothing.

    async def _on_error(self, exc: Exception) -> None:
        self.stats.nats_errors += 1
        self.stats.record_error(repr(exc))
        self._error_log.note(
            type(exc).__name__,
            "salt-nats %s: NATS error: %r%s",
            self.settings.name,
            exc,
            connection_hint(exc, self.settings),
        )

    async def _on_disconnected(self) -> None:
        if self._stopping:
            return
        self.stats.nats_disconnects += 1
        log.warning(
            "salt-nats %s: disconnected from NATS; events are buffered while the client reconnects",
            self.settings.name,
        )

    async def _on_reconnected(self) -> None:
        self.stats.nats_reconnects += 1
        log.info(
            "salt-nats %s: reconnected to NATS server %s", self.settings.name, self.connected_url
        )
        self.on_ready()

    async def _on_closed(self) -> None:
        self._closed_event.set()


def _version(client: Client) -> str:
    version = client.connected_server_version
    return f"{version.major}.{version.minor}.{version.patch}"


# nats-py 2.16 can wait forever in close() after a failed TLS handshake.
_CLOSE_TIMEOUT = 2.0


async def close_quietly(client: Client, timeout: float = _CLOSE_TIMEOUT) -> None:
    """Close a client, waiting at most ``timeout`` seconds, and log any failure at debug."""
    if client.is_closed:
        return
    try:
        await asyncio.wait_for(client.close(), timeout)
    except Exception as exc:  # closing a broken client may fail in many ways
        log.debug("closing the NATS client failed: %r", exc)
