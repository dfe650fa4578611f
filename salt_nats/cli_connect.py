"""Connection options, connecting and connection errors of the ``salt-nats`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from nats import errors as nats_errors
from nats.aio.client import Client

from salt_nats.config import redact_url
from salt_nats.connection import close_quietly
from salt_nats.status import RateLimitedLog

log = logging.getLogger(__name__)

DEFAULT_SERVER = "nats://127.0.0.1:4222"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_STATUS_TIMEOUT = 1.0

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# Wait between reconnect attempts while `tail` follows events, in seconds.
_TAIL_RECONNECT_WAIT = 2.0

# Interval between repeated warnings of one kind, such as slow consumer errors.
WARNING_INTERVAL = 10.0

# Time allowed to close the connection at the end of a command, in seconds.
_CLOSE_TIMEOUT = 2.0


class CommandError(Exception):
    """A failure that ends the command with a message and an exit status, not a traceback."""

    def __init__(self, message: str, exit_status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_status = exit_status


# -- connecting ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionOptions:
    """The NATS connection settings of one command."""

    servers: tuple[str, ...] = (DEFAULT_SERVER,)
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds: str | None = None
    nkey: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tls_first: bool = False
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ConnectionOptions:
        """Build the options from parsed command-line arguments."""
        servers = tuple(url.strip() for url in args.server.split(",") if url.strip())
        if not servers:
            raise CommandError("--server is empty; give at least one NATS URL", EXIT_USAGE)
        return cls(
            servers=servers,
            user=args.user or None,
            password=args.password or None,
            token=args.token or None,
            creds=args.creds or None,
            nkey=args.nkey or None,
            tls_cert=args.tlscert or None,
            tls_key=args.tlskey or None,
            tls_ca=args.tlsca or None,
            tls_first=args.tlsfirst,
            connect_timeout=args.connect_timeout,
        )

    @property
    def tls_requested(self) -> bool:
        """True when a TLS option or a ``tls://`` URL requests an encrypted connection."""
        tls_url = any(url.lower().startswith("tls://") for url in self.servers)
        return tls_url or self.tls_first or self.tls_ca is not None or self.tls_cert is not None

    @property
    def server_list(self) -> str:
        """The server URLs for messages, without user info."""
        return ", ".join(redact_url(url) for url in self.servers)

    def connect_kwargs(self) -> dict[str, Any]:
        """Return the authentication and TLS keyword arguments of ``nats.connect``.

        Raises :class:`CommandError` with the usage exit status for a file that
        cannot be read and for a TLS key without a certificate.
        """
        kwargs: dict[str, Any] = {
            "servers": list(self.servers),
            "connect_timeout": self.connect_timeout,
        }
        if self.user is not None:
            kwargs["user"] = self.user
        if self.password is not None:
            kwargs["password"] = self.password
        if self.token is not None:
            kwargs["token"] = self.token
        if self.creds is not None:
            _check_readable(self.creds, "--creds")
            kwargs["user_credentials"] = self.creds
        if self.nkey is not None:
            _check_readable(self.nkey, "--nkey")
            kwargs["nkeys_seed"] = self.nkey

        tls = self.tls_context()
        if tls is not None:
            kwargs["tls"] = tls
        if self.tls_first:
            kwargs["tls_handshake_first"] = True
        return kwargs

    def tls_context(self) -> ssl.SSLContext | None:
        """Return the TLS context for the TLS options, or None when none is set.

        Without a context, nats-py still upgrades to TLS, with the system's CAs, when
        the server requires TLS.
        """
        if self.tls_key is not None and self.tls_cert is None:
            raise CommandError("--tlskey requires --tlscert", EXIT_USAGE)
        if self.tls_ca is None and self.tls_cert is None and not self.tls_first:
            return None

        try:
            context = ssl.create_default_context(cafile=self.tls_ca)
        except (OSError, ssl.SSLError) as error:
            raise CommandError(
                f"cannot load the CA certificates of --tlsca {self.tls_ca}: {_reason(error)}",
                EXIT_USAGE,
            ) from None
        if self.tls_cert is not None:
            try:
                context.load_cert_chain(self.tls_cert, self.tls_key)
            except (OSError, ssl.SSLError) as error:
                raise CommandError(
                    f"cannot load the client certificate --tlscert {self.tls_cert}"
                    f"{f' with --tlskey {self.tls_key}' if self.tls_key else ''}: "
                    f"{_reason(error)}",
                    EXIT_USAGE,
                ) from None
        return context


def _check_readable(path: str, option: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise CommandError(
            f"cannot read {option} file {path}: {_reason(error)}", EXIT_USAGE
        ) from None


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return str(error.reason or error)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _is_authorization_error(error: BaseException) -> bool:
    if isinstance(error, nats_errors.AuthorizationError):
        return True
    text = str(error).lower()
    return "authorization violation" in text or "authentication" in text


def describe_connect_error(error: BaseException, connect_timeout: float) -> str:
    """Return a short reason for one failed connection attempt."""
    if _is_authorization_error(error):
        return "authorization failed"
    if isinstance(error, nats_errors.SecureConnRequiredError):
        return "the server requires TLS; use a tls:// URL or --tlsca"
    if isinstance(error, nats_errors.SecureConnWantedError):
        return "the server does not offer TLS; remove the TLS options"
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed: {_reason(error)}"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host name: {error.strerror}"
    # TimeoutError is an OSError, so it comes before the errno check.
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return f"timed out after {connect_timeout:g} s"
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)
    return str(error) or type(error).__name__


def connect_failure_message(options: ConnectionOptions, errors: list[BaseException]) -> str:
    """Return the message for a first connection that failed with ``errors``."""
    reasons = list(
        dict.fromkeys(describe_connect_error(e, options.connect_timeout) for e in errors)
    )
    if "authorization failed" in reasons:
        return (
            f"authorization failed on {options.server_list}; check --user and --password, "
            "--token, --creds or --nkey"
        )
    return f"cannot connect to {options.server_list}: {'; '.join(reasons)}"


class _ConnectionCallbacks:
    """nats-py callbacks of one command's connection.

    Errors of the first connect are collected for the error message. Later errors and
    disconnects become warnings, because ``tail`` keeps running through them.
    """

    def __init__(self, client: Client, options: ConnectionOptions, follow: bool) -> None:
        self.client = client
        self.options = options
        self.follow = follow
        self.connect_errors: list[BaseException] = []
        self.tls_failed = asyncio.Event()
        self._warnings = RateLimitedLog(log, WARNING_INTERVAL, prefix="salt-nats")

    async def on_error(self, error: Exception) -> None:
        if not self.client.is_connected and not self.client.is_reconnecting:
            self.connect_errors.append(error)
            if isinstance(error, ssl.SSLError):
                self.tls_failed.set()
            return
        if isinstance(error, nats_errors.UnexpectedEOF):
            return  # on_disconnected reports the lost connection
        self._warnings.note(
            type(error).__name__,
            "NATS error: %s",
            describe_connect_error(error, self.options.connect_timeout),
        )

    async def on_disconnected(self) -> None:
        if self.follow and not self.client.is_closed:
            log.warning(
                "disconnected from NATS; reconnecting. Events published meanwhile are not "
                "received: use salt-nats replay to read them from the stream"
            )

    async def on_reconnected(self) -> None:
        log.warning("reconnected to %s", connected_server(self.client))


async def open_connection(options: ConnectionOptions, *, name: str, follow: bool) -> Client:
    """Connect to NATS, trying each server twice, and return the client.

    With ``follow``, the client then reconnects without limit after a disconnect,
    as a long-running ``tail`` needs. Raises :class:`CommandError` when no server
    accepts the connection, and when TLS was requested but the server does not use it.
    """
    client = Client()
    callbacks = _ConnectionCallbacks(client, options, follow)
    connecting = asyncio.ensure_future(
        client.connect(
            **options.connect_kwargs(),
            name=name,
            error_cb=callbacks.on_error,
            disconnected_cb=callbacks.on_disconnected,
            reconnected_cb=callbacks.on_reconnected,
            allow_reconnect=True,
            # Each server gets one connection attempt and one retry after 0.1 s.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
        )
    )

    # nats-py 2.16 hangs while it closes a connection whose TLS handshake failed, and
    # so never tries the next server. A TLS failure therefore ends the connect at
    # once, and a deadline bounds every other case.
    deadline = options.connect_timeout * 2 * len(options.servers) + 1.0
    tls_failure = asyncio.ensure_future(callbacks.tls_failed.wait())
    try:
        finished, _ = await asyncio.wait(
            {connecting, tls_failure}, timeout=deadline, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        tls_failure.cancel()

    if connecting not in finished:
        connecting.cancel()
        await asyncio.wait({connecting}, timeout=_CLOSE_TIMEOUT)
        await close_quietly(client)
        reasons = callbacks.connect_errors or [asyncio.TimeoutError()]
        raise CommandError(connect_failure_message(options, reasons))
    try:
        connecting.result()
    except (nats_errors.Error, OSError, asyncio.TimeoutError) as error:
        await close_quietly(client)
        reasons = callbacks.connect_errors or [error]
        raise CommandError(connect_failure_message(options, reasons)) from None

    if options.tls_requested and not options.tls_first and not _server_requires_tls(client):
        server = connected_server(client)
        await close_quietly(client)
        raise CommandError(
            f"the server at {server} does not offer TLS, so the connection would not be "
            "encrypted; connect to a server with TLS, or remove the TLS options and tls:// URLs"
        )

    if follow:
        # nats-py reads these options again on every reconnect, so changing them
        # now keeps the fast failure of the first connect and retries later forever.
        client.options["max_reconnect_attempts"] = -1
        client.options["reconnect_time_wait"] = _TAIL_RECONNECT_WAIT
    return client


def _server_requires_tls(client: Client) -> bool:
    # NOTE: nats-py 2.16 has no public way to tell whether a connection uses TLS. It
    # upgrades to TLS only when the server's INFO sets tls_required, and otherwise
    # stays in plain text even for a tls:// URL, so this reads that INFO field.
    server_info = getattr(client, "_server_info", None) or {}
    return bool(server_info.get("tls_required"))


def connected_server(client: Client) -> str:
    if client.connected_url is None:
        return "NATS"
    return redact_url(client.connected_url.geturl())
