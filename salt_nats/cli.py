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
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from typing import Any, TextIO

from nats import errors as nats_errors
from nats.aio.msg import Msg
from nats.js import errors as js_errors

from salt_nats import __version__
from salt_nats.cli_connect import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SERVER,
    DEFAULT_STATUS_TIMEOUT,
    EXIT_OK,
    EXIT_USAGE,
    WARNING_INTERVAL,
    CommandError,
    ConnectionOptions,
    connected_server,
    open_connection,
)
from salt_nats.cli_status import run_status
from salt_nats.connection import close_quietly
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
from salt_nats.micro import SERVICE_NAME
from salt_nats.status import RateLimitedLog
from salt_nats.subjects import DEFAULT_EVENT_PREFIX, DEFAULT_MAX_SUBJECT_BYTES, validate_prefix

log = logging.getLogger(__name__)

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
    skipped = RateLimitedLog(log, WARNING_INTERVAL, prefix="salt-nats")

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
        _notice(f"Listening on {', '.join(subjects)} at {connected_server(client)}")

        outcome = await run_until_stopped(enough.wait(), args.timeout)
    finally:
        await close_quietly(client)

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
            f"JetStream is not enabled on {connected_server(client)}; replay needs the "
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
        await close_quietly(client)

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
