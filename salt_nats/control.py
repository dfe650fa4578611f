"""The status protocol between the engine and ``salt-run nats.status``.

The runner fires ``salt-nats/status/request`` with a ``request_id`` on the master
bus; every running engine instance replies with one event tagged
``salt-nats/status/reply/<request_id>/<instance name>`` whose data is its report.
Both travel on the Salt bus, so status works while NATS is down. Each instance also
writes its report to ``<status_dir>/<instance name>.json`` every
``heartbeat_interval`` seconds, so the runner can tell an instance that stopped
answering from one that never started.

This module is pure: no Salt, no nats-py.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATUS_REQUEST_TAG = "salt-nats/status/request"
STATUS_REPLY_PREFIX = "salt-nats/status/reply/"
CONTROL_TAG_PREFIX = "salt-nats/"

# Instance states, as reported by the engine and the runner.
STATE_CONNECTING = "connecting"  # started, no NATS connection yet
STATE_CONNECTED = "connected"  # connected, nothing waits longer than a second
STATE_BUFFERING = "buffering"  # connected, but events wait: NATS or the stream is slow
STATE_RECONNECTING = "reconnecting"  # the connection dropped; events are buffered
STATE_STOPPED = "stopped"  # shut down
STATE_FAILED = "failed"  # invalid configuration; the instance forwards nothing
STATE_DOWN = "down"  # runner only: configured, but no reply and no fresh heartbeat


_INSTANCE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def instance_name(options: Any, fallback: str) -> str:
    """Return the name an instance reports under: a valid ``name`` option, else ``fallback``.

    The engine passes the ``engines:`` entry name as ``fallback``, which is ``nats``
    for a plain entry. An invalid ``name`` is ignored here, because it is reported as
    a config error under the fallback name.
    """
    if isinstance(options, Mapping):
        name = options.get("name")
        if isinstance(name, str) and _INSTANCE_NAME_RE.match(name):
            return name
    return fallback


def reply_tag(request_id: str, instance: str) -> str:
    """Return the tag of an instance's reply to one status request."""
    return f"{STATUS_REPLY_PREFIX}{request_id}/{instance}"


def heartbeat_path(status_dir: str | Path, instance: str) -> Path:
    """Return the heartbeat file of an instance."""
    return Path(status_dir) / f"{instance}.json"


def write_heartbeat(status_dir: str | Path, instance: str, report: dict[str, Any]) -> None:
    """Write the report atomically, so a reader never sees half a file."""
    directory = Path(status_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = {**report, "heartbeat_time": time.time()}
    handle, temp_path = tempfile.mkstemp(dir=directory, prefix=f".{instance}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(record, stream, default=str)
        os.replace(temp_path, heartbeat_path(directory, instance))
    except BaseException:
        Path(temp_path).unlink(missing_ok=True)
        raise


def read_heartbeat(status_dir: str | Path, instance: str) -> dict[str, Any] | None:
    """Return the last heartbeat report of an instance, or None if there is none."""
    try:
        with heartbeat_path(status_dir, instance).open(encoding="utf-8") as stream:
            record = json.load(stream)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("cannot read the salt-nats heartbeat of %s: %s", instance, exc)
        return None
    return record if isinstance(record, dict) else None
