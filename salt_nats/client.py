"""Short-lived NATS connections for the runner and the execution module.

``salt-run nats.publish`` and ``salt '*' nats.publish`` run once per command, so each
function here opens one connection, does one thing and closes it, all within a
deadline in seconds. A NATS server that is down, or that accepts the TCP connection
and then sends nothing, yields :class:`NatsClientError` when the deadline passes
instead of a command that hangs.

nats-py is asyncio-only. Each call runs its own event loop with ``asyncio.run()``,
in a worker thread when the calling thread already runs a loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import re
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nats import errors as nats_errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from salt_nats.config import ConfigError, EngineSettings, redact_url
from salt_nats.connection import close_quietly, connect_options

DEFAULT_TIMEOUT = 5.0

# Time allowed to close the connection after the work is done. A close that takes
# longer is abandoned, and the server drops the connection when the process exits.
_CLOSE_TIMEOUT = 0.5

# Wait between the two connect attempts that each server gets.
_RETRY_WAIT = 0.1

_SUBJECT_FORBIDDEN_RE = re.compile(r"[\s\x00-\x1f\x7f]")
_HEADER_NAME_RE = re.compile(r"^[!-9;-~]+$")  # printable ASCII without ':' and space

T = TypeVar("T")


class NatsClientError(Exception):
    """Connecting to NATS, or the publish or request after it, failed or timed out.

    The message names the servers with any user info replaced by ``***``.
    """


@dataclass(frozen=True)
class PublishResult:
    """A message that the server has received (the flush after the publish returned)."""

    subject: str
    size: int
    server: str


@dataclass(frozen=True)
class Reply:
    """The reply to a request and the round-trip time in seconds."""

    server: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0


@dataclass(frozen=True)
class Delivery:
    """The first message that arrived on a subscription, and how long after the trigger."""

    subject: str
    server: str
    headers: dict[str, str]
    latency: float


# -- payloads ---------------------------------------------------------------------------


def encode_data(data: Any) -> tuple[bytes, str | None]:
    """Return the payload bytes for ``data`` and its content type, if one applies.

    A str is sent as UTF-8 text and bytes as they are. Anything else (a dict, a list,
    a number, a boolean or None, as Salt's command line parses them from YAML) is
    sent as JSON, with the content type ``application/json``.
    """
    if isinstance(data, bytes):
        return data, None
    if isinstance(data, str):
        return data.encode("utf-8"), None
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    except ValueError as exc:  # a circular reference
        raise ValueError(f"data cannot be encoded as JSON: {exc}") from None
    return text.encode("utf-8"), "application/json"


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise ValueError(f"a value of type {type(value).__name__} cannot be encoded as JSON")


def decode_data(data: bytes) -> Any:
    """Return a payload decoded as JSON, else as UTF-8 text, else None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def validate_publish_subject(subject: Any) -> str:
    """Return ``subject`` if a message can be published on it, else raise ValueError."""
    if not isinstance(subject, str) or not subject:
        raise ValueError(f"invalid subject {subject!r}: expected a non-empty string")
    if _SUBJECT_FORBIDDEN_RE.search(subject):
        raise ValueError(f"invalid subject {subject!r}: it contains whitespace or a control code")
    tokens = subject.split(".")
    if any(not token for token in tokens):
        raise ValueError(f"invalid subject {subject!r}: it has an empty token")
    if any(token in ("*", ">") for token in tokens):
        raise ValueError(
            f"invalid subject {subject!r}: the wildcards * and > are valid only in subscriptions"
        )
    return subject


def validate_headers(headers: Any) -> dict[str, str] | None:
    """Return message headers as a str-to-str dict, or raise ValueError.

    Values that are not strings (Salt's command line parses ``3`` as an integer)
    are converted with ``str()``.
    """
    if headers is None or headers == {}:
        return None
    if not isinstance(headers, Mapping):
        raise ValueError(f"invalid headers {headers!r}: expected a mapping of names to values")
    checked = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME_RE.match(name):
            raise ValueError(
                f"invalid header name {name!r}: use printable ASCII without spaces or ':'"
            )
        text = value if isinstance(value, str) else str(value)
        if "\r" in text or "\n" in text:
            raise ValueError(f"invalid value of header {name!r}: it contains a line break")
        checked[name] = text
    return checked


def describe_servers(settings: EngineSettings) -> str:
    """Return the server list for messages, with user info replaced by ``***``."""
    return ", ".join(redact_url(url) for url in settings.servers)


# -- operations -------------------------------------------------------------------------


def publish(
    settings: EngineSettings,
    subject: str,
    payload: bytes,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    connection_name: str = "salt-nats client",
) -> PublishResult:
    """Publish one message and wait until the server has received it.

    Raises :class:`NatsClientError` when connecting or the flush fails or takes
    longer than ``timeout`` seconds in total.
    """

    async def work(client: Client, server: str, progress: _Progress) -> PublishResult:
        progress.step = f"publishing on {subject}"
        await client.publish(subject, payload, headers=headers)
        progress.step = f"waiting for {server} to confirm the publish on {subject}"
        await client.flush(timeout=progress.remaining())
        return PublishResult(subject, len(payload), server)

    return _run_with_connection(settings, connection_name, timeout, "publish", work)


def request(
    settings: EngineSettings,
    subject: str,
    payload: bytes,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    connection_name: str = "salt-nats client",
) -> Reply:
    """Send a request and return the first reply.

    Raises :class:`NatsClientError` when no subscriber listens on ``subject``, when no
    reply arrives, or when connecting fails, all within ``timeout`` seconds in total.
    """

    async def work(client: Client, server: str, progress: _Progress) -> Reply:
        progress.step = f"waiting for a reply on {subject}"
        started = time.monotonic()
        try:
            message = await client.request(
                subject, payload, timeout=progress.remaining(), headers=headers
            )
        except nats_errors.NoRespondersError:
            raise NatsClientError(
                f"request on {subject} failed: no subscriber listens on this subject "
                f"(server {server})"
            ) from None
        except nats_errors.TimeoutError:
            raise NatsClientError(
                f"request on {subject} timed out after {timeout:g} s: no reply arrived "
                f"(server {server})"
            ) from None
        return Reply(server, message.data, _headers_of(message), time.monotonic() - started)

    return _run_with_connection(settings, connection_name, timeout, "request", work)


def await_delivery(
    settings: EngineSettings,
    subject: str,
    trigger: Callable[[], float],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    connection_name: str = "salt-nats client",
    trigger_step: str = "calling the trigger",
) -> Delivery:
    """Subscribe to ``subject``, call ``trigger``, and wait for the first message.

    ``trigger`` runs in a worker thread once the server has registered the
    subscription, so it may block (Salt's event API does). It returns the
    ``time.monotonic()`` at which it sent whatever makes the message appear; the
    latency counts from there. ``trigger_step`` describes the trigger in a timeout
    message. Raises :class:`NatsClientError` when connecting fails or no message
    arrives within ``timeout`` seconds in total. An exception from ``trigger``
    propagates unchanged.
    """

    async def work(client: Client, server: str, progress: _Progress) -> Delivery:
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[tuple[Msg, float]] = loop.create_future()

        async def on_message(message: Msg) -> None:
            if not arrived.done():
                arrived.set_result((message, time.monotonic()))

        progress.step = f"subscribing to {subject}"
        subscription = await client.subscribe(subject, cb=on_message)
        await client.flush(timeout=progress.remaining())

        progress.step = trigger_step
        executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="salt-nats-trigger")
        try:
            sent_at = await loop.run_in_executor(executor, trigger)
        finally:
            executor.shutdown(wait=False)

        progress.step = f"waiting for a message on {subject}"
        try:
            message, received_at = await asyncio.wait_for(arrived, progress.remaining())
        except asyncio.TimeoutError:
            raise NatsClientError(
                f"no message arrived on {subject} within {timeout:g} s (server {server})"
            ) from None
        finally:
            with contextlib.suppress(nats_errors.Error):
                await subscription.unsubscribe()
        return Delivery(message.subject, server, _headers_of(message), received_at - sent_at)

    return _run_with_connection(settings, connection_name, timeout, "subscription", work)


# -- connection and deadline ------------------------------------------------------------


class _Progress:
    """The step an operation is in, and its deadline, for the timeout message."""

    def __init__(self, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.step = "starting"
        self.connect_errors: list[BaseException] = []

    def remaining(self) -> float:
        """Return the seconds left before the deadline, at least a millisecond."""
        return max(self.deadline - time.monotonic(), 0.001)


def _run_with_connection(
    settings: EngineSettings,
    connection_name: str,
    timeout: float,
    operation: str,
    work: Callable[[Client, str, _Progress], Coroutine[Any, Any, T]],
) -> T:
    if not (timeout > 0):
        raise ValueError(f"invalid timeout {timeout!r}: expected a number of seconds above 0")
    progress = _Progress(timeout)

    async def main() -> T:
        client = await _connect(settings, connection_name, progress)
        try:
            server = _server_of(client, settings)
            return await work(client, server, progress)
        finally:
            await _close(client)

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(main(), timeout)
        except asyncio.TimeoutError as exc:
            if isinstance(exc, nats_errors.Error):  # nats-py's TimeoutError subclasses it
                raise _failed(settings, operation, progress, exc) from None
            raise _timed_out(settings, operation, progress, timeout) from None
        except (nats_errors.Error, OSError) as exc:
            # OSError includes ssl.SSLError from loading the TLS files.
            raise _failed(settings, operation, progress, exc) from None
        except ConfigError as exc:
            # connect_options() raises this for an sdb:// secret that the caller did not
            # resolve with salt_nats.secrets.resolve_secrets first.
            raise NatsClientError(f"invalid NATS settings: {exc}") from None

    return _run(bounded)


async def _connect(settings: EngineSettings, connection_name: str, progress: _Progress) -> Client:
    progress.step = f"connecting to {describe_servers(settings)}"
    options = connect_options(settings, connection_name)
    # The engine retries forever. Here each server gets two attempts, and the
    # deadline cuts them short, so a NATS outage returns an error in time.
    options.update(
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=_RETRY_WAIT,
        connect_timeout=min(settings.connect_timeout, progress.remaining()),
    )

    async def on_error(exc: Exception) -> None:
        progress.connect_errors.append(exc)

    client = Client()
    try:
        await client.connect(**options, error_cb=on_error)
    except BaseException:
        await _close(client)
        raise
    return client


async def _close(client: Client) -> None:
    # The work is done, so a failed close is ignored: the server drops the
    # connection when this process exits.
    await close_quietly(client, _CLOSE_TIMEOUT)


def _run(coroutine_function: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a new event loop, in a worker thread if this one runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine_function())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="salt-nats-client") as pool:
        return pool.submit(asyncio.run, coroutine_function()).result()


def _server_of(client: Client, settings: EngineSettings) -> str:
    url = client.connected_url
    if url is None:
        return describe_servers(settings)
    return redact_url(url.geturl())


def _headers_of(message: Msg) -> dict[str, str]:
    return dict(message.headers or {})


def _timed_out(
    settings: EngineSettings, operation: str, progress: _Progress, timeout: float
) -> NatsClientError:
    message = f"NATS {operation} timed out after {timeout:g} s while {progress.step}"
    if progress.connect_errors:
        message += f"; last connection error: {_describe(progress.connect_errors[-1])}"
    return NatsClientError(_hide_user_info(message, settings))


def _failed(
    settings: EngineSettings, operation: str, progress: _Progress, exc: BaseException
) -> NatsClientError:
    if isinstance(exc, nats_errors.NoServersError) and progress.connect_errors:
        exc = progress.connect_errors[-1]
    message = f"NATS {operation} failed while {progress.step}: {_describe(exc)}"
    return NatsClientError(_hide_user_info(message, settings))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _hide_user_info(message: str, settings: EngineSettings) -> str:
    """Remove the user info of the configured server URLs from an error message.

    nats-py's own errors name hosts and ports, not URLs, but an error message must
    never carry a password, whatever raised it.
    """
    for url in settings.servers:
        _, _, rest = url.partition("://")
        user_info, at, _ = rest.rpartition("@")
        if at and user_info:
            message = message.replace(user_info, "***")
    return message
