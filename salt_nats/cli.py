"""The ``salt-nats`` command: follow, replay and inspect the events that the engine publishes.

``tail`` follows events live, ``replay`` reads them back from the JetStream stream,
``status`` requests the status of every engine instance through the NATS micro
service ``salt-nats``, and ``demo`` runs a throwaway nats-server, master and minion.

The connection options follow the ``nats`` command-line tool: ``-s/--server``,
``--user``, ``--password``, ``--creds``, ``--nkey``, ``--tlscert``, ``--tlskey``,
``--tlsca`` and ``--tlsfirst``, with its environment variables (``NATS_URL``,
``NATS_USER`` and so on) as defaults.

Exit statuses: 0 on success, 1 when NATS, the stream or the engine fails the
command, and 2 for invalid arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TextIO

from nats import errors as nats_errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import errors as js_errors

from salt_nats import __version__
from salt_nats.config import redact_url
from salt_nats.consumer import (
    DEFAULT_STREAM,
    Event,
    EventFilter,
    ReplayError,
    ReplayProgress,
    ReplayRange,
    StreamNotFoundError,
    decode_event,
    parse_time,
    render_json,
    render_text,
    replay_messages,
    subscription_subjects,
    use_color,
    validate_glob,
)
from salt_nats.micro import SERVICE_NAME, status_subject
from salt_nats.status import RateLimitedLog
from salt_nats.subjects import DEFAULT_EVENT_PREFIX, DEFAULT_MAX_SUBJECT_BYTES, validate_prefix

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
_WARNING_INTERVAL = 10.0

# Time allowed to close the connection at the end of a command, in seconds.
_CLOSE_TIMEOUT = 2.0


class CommandError(Exception):
    """A failure that ends the command with a message and an exit status, not a traceback."""

    def __init__(self, message: str, exit_status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_status = exit_status


# -- arguments ----------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is invalid: use a number of at least 1")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is invalid: use a number of seconds above 0")
    return value


def _glob(text: str) -> str:
    try:
        return validate_glob(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _time(text: str) -> datetime.datetime:
    try:
        return parse_time(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _prefix(text: str) -> str:
    try:
        validate_prefix(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _connection_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("connection options")
    environ = os.environ

    group.add_argument(
        "-s",
        "--server",
        metavar="URLS",
        default=environ.get("NATS_URL") or DEFAULT_SERVER,
        help=f"NATS server URLs, separated by commas (default: $NATS_URL, else {DEFAULT_SERVER})",
    )
    group.add_argument(
        "--user", default=environ.get("NATS_USER"), help="user name (default: $NATS_USER)"
    )
    group.add_argument(
        "--password",
        default=environ.get("NATS_PASSWORD"),
        help="password (default: $NATS_PASSWORD)",
    )
    group.add_argument("--token", help="authentication token")
    group.add_argument(
        "--creds",
        metavar="FILE",
        default=environ.get("NATS_CREDS"),
        help="user credentials file with a JWT and an nkey seed (default: $NATS_CREDS)",
    )
    group.add_argument(
        "--nkey",
        metavar="FILE",
        default=environ.get("NATS_NKEY"),
        help="file with a user nkey seed (default: $NATS_NKEY)",
    )
    group.add_argument(
        "--tlscert",
        metavar="FILE",
        default=environ.get("NATS_CERT"),
        help="TLS client certificate, PEM (default: $NATS_CERT)",
    )
    group.add_argument(
        "--tlskey",
        metavar="FILE",
        default=environ.get("NATS_KEY"),
        help="private key of the TLS client certificate, PEM (default: $NATS_KEY)",
    )
    group.add_argument(
        "--tlsca",
        metavar="FILE",
        default=environ.get("NATS_CA"),
        help="CA certificates that verify the server, PEM (default: $NATS_CA, else the "
        "system's CAs)",
    )
    group.add_argument(
        "--tlsfirst",
        action="store_true",
        help="start TLS before the server's greeting, for servers with handshake_first",
    )
    group.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        default=DEFAULT_CONNECT_TIMEOUT,
        help="timeout of each connection attempt and of each JetStream request "
        "(default: %(default)g)",
    )
    return parser


def _event_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)

    filters = parser.add_argument_group(
        "filters", "Repeat a filter for any of several values. Different filters must all match."
    )
    filters.add_argument(
        "--tag",
        metavar="GLOB",
        type=_glob,
        action="append",
        default=[],
        help="tag glob in fnmatch syntax, as salt-run state.event takes, e.g. 'salt/job/*/ret/*'",
    )
    filters.add_argument(
        "--minion",
        metavar="ID",
        type=_glob,
        action="append",
        default=[],
        help="minion id or glob: the event's Salt-Origin header, the id in its data or, "
        "for a job return, the tag's last segment",
    )
    filters.add_argument(
        "--function",
        metavar="NAME",
        type=_glob,
        action="append",
        default=[],
        help="function name or glob in the event data's fun, e.g. test.ping or 'state.*'",
    )
    filters.add_argument(
        "--jid",
        action="append",
        default=[],
        help="job id: events tagged salt/job/JID/... or salt/run/JID/...",
    )
    filters.add_argument(
        "--subject-prefix",
        metavar="PREFIX",
        type=_prefix,
        default=DEFAULT_EVENT_PREFIX,
        help="the engine's subject_prefix (default: %(default)s)",
    )
    filters.add_argument(
        "--max-subject-bytes",
        metavar="BYTES",
        type=_positive_int,
        default=DEFAULT_MAX_SUBJECT_BYTES,
        help="the engine's max_subject_bytes, so that events with shortened subjects "
        "match too (default: %(default)s)",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per line with subject, tag, headers and data",
    )
    output.add_argument(
        "--count", metavar="N", type=_positive_int, help="stop after N matching events"
    )
    output.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        help="stop after this many seconds; exit with status 1 if --count events have not "
        "arrived by then",
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``salt-nats`` command."""
    parser = argparse.ArgumentParser(
        prog="salt-nats", description="Tools for the salt-nats bridge between Salt and NATS."
    )
    parser.add_argument("--version", action="version", version=f"salt-nats {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    connection = _connection_parser()
    events = _event_parser()

    commands.add_parser(
        "tail",
        parents=[events, connection],
        help="follow events live, like salt-run state.event",
        description="Follow the events that the engine publishes, as they arrive. The "
        "filters become the narrowest NATS subscription that receives every matching "
        "event, and each event is checked against them again.",
    )

    replay = commands.add_parser(
        "replay",
        parents=[events, connection],
        help="read events back from the JetStream stream",
        description="Read events back from the JetStream stream, in stream order, from a "
        "start time or sequence up to the stream's last sequence when the replay starts.",
    )
    stream_options = replay.add_argument_group("stream")
    stream_options.add_argument(
        "--stream",
        metavar="NAME",
        default=DEFAULT_STREAM,
        help="JetStream stream of the engine (default: %(default)s)",
    )
    start = stream_options.add_mutually_exclusive_group()
    start.add_argument(
        "--since",
        metavar="TIME",
        type=_time,
        help="start at this time: a duration before now such as 30m, 1h or 2d, or an ISO "
        "8601 time such as 2026-12-04T10:00:00Z (local time without an offset); "
        "default: the first event in the stream",
    )
    start.add_argument(
        "--start-seq", metavar="N", type=_positive_int, help="start at this stream sequence"
    )
    stream_options.add_argument(
        "--until",
        metavar="TIME",
        type=_time,
        help="stop before the first event stored after this time, in the forms of --since",
    )
    stream_options.add_argument(
        "--end-seq", metavar="N", type=_positive_int, help="stop after this stream sequence"
    )

    status = commands.add_parser(
        "status",
        parents=[connection],
        help="show the status of every engine instance",
        description=f"Find the engine instances through the NATS micro service "
        f"{SERVICE_NAME} and print the status that each one returns.",
    )
    status.add_argument("--json", action="store_true", help="print the statuses as JSON")
    status.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        default=DEFAULT_STATUS_TIMEOUT,
        help="time to collect instances, and to wait for each status reply (default: %(default)g)",
    )

    demo = commands.add_parser(
        "demo",
        help="start a local nats-server, salt-master and minion, run jobs, print the events",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop this many seconds after the jobs ran, instead of waiting for Ctrl-C",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary folder with configs and logs"
    )
    demo.add_argument(
        "--format", choices=("json", "msgpack"), default="json", help="payload format"
    )
    return parser


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
        self._warnings = RateLimitedLog(log, _WARNING_INTERVAL, prefix="salt-nats")

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
        log.warning("reconnected to %s", _connected_server(self.client))


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
        await _close_quietly(client)
        reasons = callbacks.connect_errors or [asyncio.TimeoutError()]
        raise CommandError(connect_failure_message(options, reasons))
    try:
        connecting.result()
    except (nats_errors.Error, OSError, asyncio.TimeoutError) as error:
        await _close_quietly(client)
        reasons = callbacks.connect_errors or [error]
        raise CommandError(connect_failure_message(options, reasons)) from None

    if options.tls_requested and not options.tls_first and not _server_requires_tls(client):
        server = _connected_server(client)
        await _close_quietly(client)
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


async def _close_quietly(client: Client) -> None:
    if client.is_closed:
        return
    try:
        await asyncio.wait_for(client.close(), _CLOSE_TIMEOUT)
    except (nats_errors.Error, OSError, asyncio.TimeoutError) as error:
        log.debug("closing the NATS connection failed: %r", error)


def _connected_server(client: Client) -> str:
    if client.connected_url is None:
        return "NATS"
    return redact_url(client.connected_url.geturl())


# -- running until done, stopped or timed out ---------------------------------------


async def run_until_stopped(work: Awaitable[Any], timeout: float | None) -> str:
    """Run ``work`` until it ends, SIGINT or SIGTERM arrives, or ``timeout`` passes.

    Returns ``"done"``, ``"stopped"`` or ``"timeout"``. An exception from ``work``
    propagates. On a signal or timeout, ``work`` is cancelled and awaited.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)

    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        finished, _ = await asyncio.wait(
            {task, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if task in finished:
            task.result()
            return "done"

        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return "stopped" if stop.is_set() else "timeout"
    finally:
        stopper.cancel()
        for signum in handled:
            loop.remove_signal_handler(signum)


# -- tail and replay ----------------------------------------------------------------


class EventPrinter:
    """Write events to a text stream as pretty text or JSON lines, and count them."""

    def __init__(self, stream: TextIO, as_json: bool, color: bool) -> None:
        self.stream = stream
        self.as_json = as_json
        self.color = color and not as_json
        self.printed = 0
        self.broken_pipe = False

    def write(self, event: Event) -> bool:
        """Write one event; return False when the reader of the output went away."""
        text = render_json(event) if self.as_json else render_text(event, self.color)
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self.broken_pipe = True
            return False
        self.printed += 1
        return True


def _event_filter(args: argparse.Namespace) -> tuple[EventFilter, list[str]]:
    try:
        event_filter = EventFilter(
            tags=tuple(args.tag),
            minions=tuple(args.minion),
            functions=tuple(args.function),
            jids=tuple(args.jid),
        )
        subjects = subscription_subjects(event_filter, args.subject_prefix, args.max_subject_bytes)
    except ValueError as error:
        raise CommandError(str(error), EXIT_USAGE) from None
    return event_filter, subjects


def _notice(text: str) -> None:
    # Progress notes go to stderr, so that stdout carries only events.
    print(text, file=sys.stderr, flush=True)


async def run_tail(args: argparse.Namespace, printer: EventPrinter) -> int:
    """Follow events on core NATS until --count, --timeout or a signal ends the command."""
    event_filter, subjects = _event_filter(args)
    options = ConnectionOptions.from_args(args)
    client = await open_connection(options, name="salt-nats tail", follow=True)
    enough = asyncio.Event()
    skipped = RateLimitedLog(log, _WARNING_INTERVAL, prefix="salt-nats")

    async def on_message(message: Msg) -> None:
        if enough.is_set():
            return
        event = decode_event(message.subject, message.headers, message.data, args.subject_prefix)
        if event.error is not None and not event_filter.is_empty:
            skipped.note("undecodable", "skipped a message on %s: %s", event.subject, event.error)
        if not event_filter.matches(event):
            return
        written = printer.write(event)
        if not written or (args.count is not None and printer.printed >= args.count):
            enough.set()

    try:
        for subject in subjects:
            await client.subscribe(subject, cb=on_message)
        await client.flush(timeout=options.connect_timeout)
        _notice(f"Listening on {', '.join(subjects)} at {_connected_server(client)}")

        outcome = await run_until_stopped(enough.wait(), args.timeout)
    finally:
        await _close_quietly(client)

    if outcome == "timeout" and args.count is not None:
        raise CommandError(
            f"timed out after {args.timeout:g} s with {printer.printed} of {args.count} events"
        )
    return EXIT_OK


def _replay_range(args: argparse.Namespace) -> ReplayRange:
    try:
        return ReplayRange(
            start_seq=args.start_seq,
            start_time=args.since,
            end_seq=args.end_seq,
            end_time=args.until,
        )
    except ValueError as error:
        raise CommandError(str(error), EXIT_USAGE) from None


async def run_replay(args: argparse.Namespace, printer: EventPrinter) -> int:
    """Print the stream's events in order until its last sequence at the start."""
    event_filter, subjects = _event_filter(args)
    replay_range = _replay_range(args)
    options = ConnectionOptions.from_args(args)
    client = await open_connection(options, name="salt-nats replay", follow=False)
    js = client.jetstream(timeout=options.connect_timeout)
    progress = ReplayProgress()

    async def print_events() -> None:
        messages = replay_messages(js, args.stream, subjects, replay_range, progress=progress)
        async with contextlib.aclosing(messages):
            async for message in messages:
                metadata = message.metadata
                event = decode_event(
                    message.subject,
                    message.headers,
                    message.data,
                    args.subject_prefix,
                    stream_seq=metadata.sequence.stream,
                    time=metadata.timestamp,
                )
                if not event_filter.matches(event):
                    continue
                if not printer.write(event):
                    return
                if args.count is not None and printer.printed >= args.count:
                    return

    try:
        outcome = await run_until_stopped(print_events(), args.timeout)
    except StreamNotFoundError:
        raise CommandError(
            f"stream {args.stream} not found; is the engine in jetstream mode? use --stream"
        ) from None
    except (nats_errors.NoRespondersError, js_errors.ServiceUnavailableError):
        raise CommandError(
            f"JetStream is not enabled on {_connected_server(client)}; replay needs the "
            "engine in jetstream mode"
        ) from None
    except js_errors.APIError as error:
        raise CommandError(
            f"JetStream request for stream {args.stream} failed: {error.description} "
            f"(error code {error.err_code})"
        ) from None
    except ReplayError as error:
        raise CommandError(f"replay of stream {args.stream} failed: {error}") from None
    except nats_errors.TimeoutError:
        raise CommandError(
            f"JetStream request for stream {args.stream} timed out after "
            f"{options.connect_timeout:g} s; raise --connect-timeout if the server is busy"
        ) from None
    finally:
        await _close_quietly(client)

    if outcome == "timeout":
        position = (
            f"at stream sequence {progress.last_seq}"
            if progress.last_seq is not None
            else "before the first event"
        )
        raise CommandError(
            f"replay timed out after {args.timeout:g} s {position} of {progress.end_seq}"
        )
    return EXIT_OK


# -- status -------------------------------------------------------------------------

SERVICE_INFO_SUBJECT = f"$SRV.INFO.{SERVICE_NAME}"

# nats-server replies with this status, and no data, when a request has no responder.
_NO_RESPONDERS_STATUS = "503"


@dataclass
class InstanceStatus:
    """One engine instance found through the micro service, and its status report."""

    master: str
    instance: str
    service_id: str
    version: str
    subject: str
    report: dict[str, Any] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the instance as plain data for ``--json``."""
        return {
            "master": self.master,
            "instance": self.instance,
            "service_id": self.service_id,
            "version": self.version,
            "subject": self.subject,
            "status": self.report,
            "error": self.error,
        }


@dataclass
class Discovery:
    """The service info replies to one ``$SRV.INFO.salt-nats`` request."""

    instances: list[dict[str, Any]]
    # True when the server reported that nothing listens on the subject.
    no_responders: bool = False


async def discover_instances(client: Client, timeout: float) -> Discovery:
    """Send one ``$SRV.INFO.salt-nats`` request and collect the replies for ``timeout`` s.

    Each engine instance replies with its service info. The collection ends early
    when the server reports that nothing listens on the subject.
    """
    discovery = Discovery(instances=[])
    no_responders = asyncio.Event()

    async def on_reply(message: Msg) -> None:
        if message.headers and message.headers.get("Status") == _NO_RESPONDERS_STATUS:
            discovery.no_responders = True
            no_responders.set()
            return
        try:
            info = json.loads(message.data)
        except ValueError as error:
            log.warning("ignored a reply on %s that is not JSON: %s", SERVICE_INFO_SUBJECT, error)
            return
        if isinstance(info, dict):
            discovery.instances.append(info)

    inbox = client.new_inbox()
    subscription = await client.subscribe(inbox, cb=on_reply)
    try:
        await client.publish(SERVICE_INFO_SUBJECT, b"", reply=inbox)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(no_responders.wait(), timeout)
    finally:
        await subscription.unsubscribe()
    return discovery


async def request_status(client: Client, info: dict[str, Any], timeout: float) -> InstanceStatus:
    """Request the status report of one discovered instance from its ``status`` endpoint."""
    metadata = info.get("metadata") or {}
    master = str(metadata.get("master", ""))
    instance = str(metadata.get("instance", ""))
    endpoints = info.get("endpoints") or []
    subject = next(
        (e.get("subject") for e in endpoints if isinstance(e, dict) and e.get("name") == "status"),
        None,
    ) or status_subject(master, instance)
    status = InstanceStatus(
        master=master,
        instance=instance,
        service_id=str(info.get("id", "")),
        version=str(info.get("version", "")),
        subject=subject,
    )

    try:
        reply = await client.request(subject, b"", timeout=timeout)
        report = json.loads(reply.data)
    except nats_errors.NoRespondersError:
        status.error = f"nothing listens on {subject}"
    except (nats_errors.TimeoutError, asyncio.TimeoutError):
        status.error = f"no reply on {subject} within {timeout:g} s"
    except ValueError as error:
        status.error = f"the reply on {subject} is not JSON: {error}"
    else:
        if isinstance(report, dict):
            status.report = report
        else:
            status.error = f"the reply on {subject} is not a JSON object"
    return status


def format_duration(seconds: Any) -> str:
    """Format seconds as ``42s``, ``5m07s``, ``3h02m`` or ``2d04h``, or ``-`` when unknown."""
    if not isinstance(seconds, (int, float)) or seconds < 0:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _report_value(status: InstanceStatus, key: str) -> str:
    if status.report is None:
        return "-"
    value = status.report.get(key)
    return "-" if value is None else str(value)


def _lag(status: InstanceStatus) -> str:
    lag = status.report.get("lag_seconds") if status.report else None
    return f"{lag:.1f}s" if isinstance(lag, (int, float)) else "-"


_STATUS_COLUMNS: tuple[tuple[str, Callable[[InstanceStatus], str]], ...] = (
    ("MASTER", lambda s: s.master),
    ("INSTANCE", lambda s: s.instance),
    ("STATE", lambda s: _report_value(s, "state") if s.report else "no reply"),
    ("MODE", lambda s: _report_value(s, "mode")),
    ("SERVER", lambda s: _report_value(s, "server")),
    ("UPTIME", lambda s: format_duration(s.report.get("uptime") if s.report else None)),
    ("RECEIVED", lambda s: _report_value(s, "received")),
    ("PUBLISHED", lambda s: _report_value(s, "published")),
    ("DROPPED", lambda s: _report_value(s, "dropped_total")),
    ("BUFFERED", lambda s: _report_value(s, "buffered")),
    ("LAG", _lag),
)


def render_status_table(statuses: list[InstanceStatus]) -> str:
    """Format the instances as a table, followed by their errors."""
    rows = [[name for name, _ in _STATUS_COLUMNS]]
    rows += [[cell(status) for _, cell in _STATUS_COLUMNS] for status in statuses]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_STATUS_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]

    for status in statuses:
        name = f"{status.instance}@{status.master}"
        if status.error is not None:
            lines.append(f"{name}: {status.error}")
        elif status.report and status.report.get("last_error"):
            when = status.report.get("last_error_time") or "unknown time"
            lines.append(f"{name}: last error at {when}: {status.report['last_error']}")
    return "\n".join(lines)


async def run_status(args: argparse.Namespace, stream: TextIO) -> int:
    """Print the status of every engine instance that replies; fail when none does."""
    options = ConnectionOptions.from_args(args)
    client = await open_connection(options, name="salt-nats status", follow=False)
    try:
        discovery = await discover_instances(client, args.timeout)
        if not discovery.instances:
            problem = f"no salt-nats engine listens on {SERVICE_INFO_SUBJECT}"
            if not discovery.no_responders:
                problem = f"no salt-nats engine replied on {SERVICE_INFO_SUBJECT} within "
                problem += f"{args.timeout:g} s"
            raise CommandError(
                f"{problem} at {_connected_server(client)}; check that the engine runs, "
                "connects to this NATS server and has micro_service enabled"
            )
        statuses = await asyncio.gather(
            *(request_status(client, info, args.timeout) for info in discovery.instances)
        )
    finally:
        await _close_quietly(client)

    statuses = sorted(statuses, key=lambda s: (s.master, s.instance, s.service_id))
    if args.json:
        stream.write(json.dumps([s.as_dict() for s in statuses], indent=2) + "\n")
    else:
        stream.write(render_status_table(statuses) + "\n")
    stream.flush()

    if not any(status.report is not None for status in statuses):
        raise CommandError("no engine instance returned its status")
    return EXIT_OK


# -- main ---------------------------------------------------------------------------


def _silence_stdout() -> None:
    # The reader of stdout went away (`salt-nats tail | head`). Point stdout at
    # /dev/null so that Python's final flush at exit does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Run the ``salt-nats`` command; return its exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.command == "demo":
        from salt_nats.demo import run_demo

        return run_demo(duration=args.duration, keep=args.keep, payload_format=args.format)

    printer = EventPrinter(
        sys.stdout,
        as_json=getattr(args, "json", False),
        color=use_color(sys.stdout, os.environ),
    )
    try:
        if args.command == "tail":
            status = asyncio.run(run_tail(args, printer))
        elif args.command == "replay":
            status = asyncio.run(run_replay(args, printer))
        else:
            status = asyncio.run(run_status(args, sys.stdout))
    except CommandError as error:
        print(f"salt-nats {args.command}: error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        return 130

    if printer.broken_pipe:
        _silence_stdout()
    return status


if __name__ == "__main__":
    sys.exit(main())
