"""``salt-nats status``: find engine instances through the micro service and show them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from nats import errors as nats_errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from salt_nats.cli_connect import (
    EXIT_OK,
    CommandError,
    ConnectionOptions,
    connected_server,
    open_connection,
)
from salt_nats.connection import close_quietly
from salt_nats.micro import SERVICE_NAME, status_subject

log = logging.getLogger(__name__)

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
                f"{problem} at {connected_server(client)}; check that the engine runs, "
                "connects to this NATS server and has micro_service enabled"
            )
        statuses = await asyncio.gather(
            *(request_status(client, info, args.timeout) for info in discovery.instances)
        )
    finally:
        await close_quietly(client)

    statuses = sorted(statuses, key=lambda s: (s.master, s.instance, s.service_id))
    if args.json:
        stream.write(json.dumps([s.as_dict() for s in statuses], indent=2) + "\n")
    else:
        stream.write(render_status_table(statuses) + "\n")
    stream.flush()

    if not any(status.report is not None for status in statuses):
        raise CommandError("no engine instance returned its status")
    return EXIT_OK
