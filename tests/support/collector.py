"""Collect NATS messages in a background thread, for synchronous pytest tests.

``NatsCollector`` runs nats-py on its own asyncio loop in a daemon thread, so a test
can start Salt commands and then block in ``wait_for()`` until the expected messages
arrive. It reconnects without limit across server restarts. Core NATS does not
replay messages that were published while the collector was disconnected, so call
``wait_until_connected()`` after a restart before publishing again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
DEFAULT_WAIT_TIMEOUT = 15.0
RECONNECT_TIME_WAIT = 0.2


@dataclass(frozen=True)
class ReceivedMessage:
    """One NATS message as the collector received it."""

    subject: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)
    reply: str = ""
    # Wall-clock time (time.time()) when the collector's callback ran.
    received_at: float = 0.0

    def json(self) -> Any:
        """Decode ``data`` as UTF-8 JSON."""
        return json.loads(self.data)


Predicate = Callable[[ReceivedMessage], bool]


class NatsCollector:
    """Subscribe to ``subject`` on ``url`` and store every message it receives.

    The constructor returns once the subscription is registered on the server, so
    messages published after it returns are collected. Use it as a context manager,
    or call ``close()``.
    """

    def __init__(
        self,
        url: str | list[str],
        subject: str = "salt.events.>",
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        name: str = "salt-nats-test-collector",
    ) -> None:
        self.url = url
        self.subject = subject
        self.name = name
        self.reconnect_count = 0
        self.disconnect_count = 0
        self.errors: list[Exception] = []

        self._messages: list[ReceivedMessage] = []
        self._condition = threading.Condition()
        self._client: Client | None = None

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"NatsCollector({subject})", daemon=True
        )
        self._thread.start()

        try:
            self._run(self._connect(), timeout=connect_timeout)
        except BaseException:
            self._stop_loop()
            raise

    def __enter__(self) -> NatsCollector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<NatsCollector {self.subject} on {self.url}: {len(self._messages)} messages>"

    # --- public API, called from the test's thread -----------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Snapshot of every message received so far, oldest first."""
        with self._condition:
            return list(self._messages)

    @property
    def is_connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    def clear(self) -> None:
        """Forget all stored messages."""
        with self._condition:
            self._messages.clear()

    def wait_for(
        self, predicate: Predicate | None = None, timeout: float = DEFAULT_WAIT_TIMEOUT
    ) -> list[ReceivedMessage]:
        """Wait until at least one stored message matches ``predicate``, and return all matches."""
        return self.wait_for_count(1, predicate, timeout)

    def wait_for_count(
        self,
        count: int,
        predicate: Predicate | None = None,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> list[ReceivedMessage]:
        """Wait until at least ``count`` stored messages match ``predicate``, and return them all.

        Raises ``TimeoutError`` that names the subjects received so far when
        fewer messages match within ``timeout`` seconds.
        """
        predicate = predicate or _match_all
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                matches = [message for message in self._messages if predicate(message)]
                if len(matches) >= count:
                    return matches
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)

            recent_subjects = [message.subject for message in self._messages[-10:]]
            received = len(self._messages)
        msg = (
            f"timed out after {timeout} s waiting for {count} matching messages on "
            f"{self.subject!r}: {len(matches)} matched, {received} received in total; "
            f"last subjects: {recent_subjects}"
        )
        raise TimeoutError(msg)

    def wait_until_connected(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Wait until the client is connected and the server has its subscription.

        After a server restart, nats-py resends the subscription on reconnect. The flush
        round trip here guarantees that the server processed it.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_connected:
                try:
                    self._run(self._client.flush(timeout=1), timeout=2)
                    return
                except (nats.errors.Error, asyncio.TimeoutError, TimeoutError) as error:
                    log.debug("Collector flush failed while reconnecting: %r", error)
            time.sleep(0.05)
        msg = f"collector did not reconnect to {self.url} within {timeout} s"
        raise TimeoutError(msg)

    def close(self) -> None:
        """Close the NATS connection and stop the collector's thread."""
        if not self._loop.is_running():
            return
        try:
            self._run(self._close_client(), timeout=5)
        except (TimeoutError, asyncio.TimeoutError, nats.errors.Error) as error:
            log.warning("Closing the collector's NATS connection failed: %r", error)
        finally:
            self._stop_loop()

    # --- internals, running on the collector's loop -----------------------------------

    def _run(self, coroutine: Any, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            # Before Python 3.11 this class is not the built-in TimeoutError.
            future.cancel()
            raise TimeoutError(f"collector operation timed out after {timeout} s") from None

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _connect(self) -> None:
        self._client = await nats.connect(
            self.url,
            name=self.name,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_TIME_WAIT,
            connect_timeout=2,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        # Zero turns off nats-py's per-subscription pending limits, so the client never
        # drops a burst as a slow consumer. The server's own limit still applies
        # (max_pending, 64 MB per connection by default in nats-server 2.15).
        await self._client.subscribe(
            self.subject,
            cb=self._on_message,
            pending_msgs_limit=0,
            pending_bytes_limit=0,
        )
        await self._client.flush()
        log.info("Collector subscribed to %s on %s", self.subject, self.url)

    async def _close_client(self) -> None:
        if self._client is not None and not self._client.is_closed:
            await self._client.close()

    async def _on_message(self, msg: Msg) -> None:
        message = ReceivedMessage(
            subject=msg.subject,
            data=msg.data,
            headers=dict(msg.headers or {}),
            reply=msg.reply or "",
            received_at=time.time(),
        )
        with self._condition:
            self._messages.append(message)
            self._condition.notify_all()

    async def _on_error(self, error: Exception) -> None:
        log.debug("Collector NATS error: %r", error)
        with self._condition:
            self.errors.append(error)

    async def _on_disconnected(self) -> None:
        self.disconnect_count += 1
        log.info("Collector disconnected from %s", self.url)

    async def _on_reconnected(self) -> None:
        self.reconnect_count += 1
        log.info("Collector reconnected to %s", self._client.connected_url.netloc)


def _match_all(_message: ReceivedMessage) -> bool:
    return True


def publish(
    url: str | list[str],
    subject: str,
    data: bytes | str = b"",
    headers: dict[str, str] | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> None:
    """Connect, publish one message, flush and close, all from synchronous code."""
    payload = data.encode() if isinstance(data, str) else data

    async def _publish() -> None:
        client = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            await client.publish(subject, payload, headers=headers)
            await client.flush()
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(_publish(), timeout))
