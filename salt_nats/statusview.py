"""Combine status replies, heartbeat files and the ``engines:`` config into one status view.

``salt-run nats.status`` gathers three sources: the replies that running engine
instances send on the master bus, the heartbeat file that each instance writes to
its status folder, and the master's ``engines:`` list, which names the instances
that should exist. This module turns them into one plain dict per instance and
decides the exit status. The dicts contain only dicts, lists, str, int, float, bool
and None, so every Salt outputter can show them.

It reads no files and imports neither Salt nor nats-py. The runner passes in what
it collected.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from salt_nats import control
from salt_nats.config import ConfigError, EngineSettings, parse_engine_settings

ENGINE_MODULE = "nats"

# The engine names an instance "nats" when neither the `name` option nor an
# `engine_module: nats` entry name gives it one (see salt_nats.service.run_engine).
DEFAULT_INSTANCE_NAME = "nats"

# The heartbeat interval of an instance whose options are invalid. Such an instance
# runs as salt_nats.service.FailedInstance, which always uses this interval and the
# default status folder, because it could not parse its own options.
DEFAULT_HEARTBEAT_INTERVAL = 10.0

# A heartbeat older than this many intervals no longer counts as a sign of life.
STALE_HEARTBEAT_INTERVALS = 3

SOURCE_REPLY = "reply"
SOURCE_HEARTBEAT = "heartbeat"
SOURCE_NONE = "none"

# States that make `salt-run nats.status` exit with a non-zero status.
UNHEALTHY_STATES = frozenset({control.STATE_DOWN, control.STATE_FAILED})

# Report fields shown at the top of each instance, in this order. Every other
# integer field is a counter, and the remaining fields follow the counters.
_LEADING_FIELDS = (
    "server",
    "mode",
    "format",
    "subject_prefix",
    "pid",
    "version",
    "started_at",
    "uptime",
    "lag_seconds",
)
_ERROR_FIELDS = ("last_error", "last_error_time")
# Integer fields that are not counters.
_NOT_COUNTERS = frozenset({"pid"})
# Fields that the view shows elsewhere (the instance name is the key of its entry).
_OMITTED_FIELDS = frozenset({"instance", "master", "state", "heartbeat_time", "dropped"})


@dataclass(frozen=True)
class ConfiguredInstance:
    """One ``engines:`` entry that runs the nats engine, with what the runner needs of it."""

    name: str
    entry: str
    options: dict[str, Any] = field(default_factory=dict)
    status_dir: str = ""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    settings: EngineSettings | None = None
    config_error: str | None = None

    @property
    def stale_after(self) -> float:
        """Age in seconds after which this instance's heartbeat counts as stale."""
        return STALE_HEARTBEAT_INTERVALS * self.heartbeat_interval


def nats_engine_entries(engines: Any) -> list[tuple[str, Any]]:
    """Return the entry name and options of each ``engines:`` entry that runs the nats engine.

    Salt accepts three forms of entry: the bare string ``nats``, a one-key mapping
    ``{nats: {...}}``, and ``{<entry name>: {engine_module: nats, ...}}``. The
    ``engines:`` option may also be one mapping of entry names to options. The
    options are returned as configured (without ``engine_module``), or None.
    """
    if isinstance(engines, Mapping):
        engines = [{key: value} for key, value in engines.items()]
    if not isinstance(engines, (list, tuple)):
        return []

    entries = []
    for item in engines:
        if isinstance(item, str):
            if item == ENGINE_MODULE:
                entries.append((item, None))
            continue
        if not isinstance(item, Mapping) or len(item) != 1:
            continue
        ((entry, options),) = item.items()
        module = entry
        if isinstance(options, Mapping) and "engine_module" in options:
            module = options["engine_module"]
            options = {key: value for key, value in options.items() if key != "engine_module"}
        if module == ENGINE_MODULE:
            entries.append((str(entry), options))
    return entries


def instance_name(entry: str, options: Any) -> str:
    """Return the name under which the engine of this entry reports itself.

    A valid ``name`` option wins. Without it, an ``engine_module: nats`` entry is
    named after the entry, and a plain ``nats`` entry is named ``nats``.
    """
    fallback = entry if entry != ENGINE_MODULE else DEFAULT_INSTANCE_NAME
    return control.instance_name(options, fallback)


def configured_instances(engines: Any, default_status_dir: str) -> list[ConfiguredInstance]:
    """Parse the ``engines:`` option into the nats engine instances it configures.

    ``default_status_dir`` is the status folder of an instance without a
    ``status_dir`` option: ``salt-nats`` under the master's cachedir.
    """
    instances = []
    for entry, options in nats_engine_entries(engines):
        name = instance_name(entry, options)
        if options is not None and not isinstance(options, Mapping):
            instances.append(
                ConfiguredInstance(
                    name=name,
                    entry=entry,
                    status_dir=default_status_dir,
                    config_error=(
                        f"the options of engines: entry {entry!r} are not a mapping: {options!r}"
                    ),
                )
            )
            continue

        options = dict(options or {})
        try:
            settings = parse_engine_settings(options, default_name=name)
        except ConfigError as exc:
            instances.append(
                ConfiguredInstance(
                    name=name,
                    entry=entry,
                    options=options,
                    status_dir=default_status_dir,
                    config_error=str(exc),
                )
            )
            continue

        instances.append(
            ConfiguredInstance(
                name=name,
                entry=entry,
                options=options,
                status_dir=settings.status_dir or default_status_dir,
                heartbeat_interval=settings.heartbeat_interval,
                settings=settings,
            )
        )
    return instances


def duplicate_name_warnings(configured: list[ConfiguredInstance]) -> list[str]:
    """Return one warning for each instance name that several entries share."""
    entries_by_name: dict[str, list[str]] = {}
    for instance in configured:
        entries_by_name.setdefault(instance.name, []).append(instance.entry)
    return [
        f"{len(entries)} engines: entries ({', '.join(entries)}) run as instance {name!r}; "
        "they reply under one name and overwrite one status file. Give each entry its own "
        "name option."
        for name, entries in entries_by_name.items()
        if len(entries) > 1
    ]


def build_status(
    master_id: str,
    configured: list[ConfiguredInstance],
    replies: Mapping[str, list[dict[str, Any]]],
    heartbeats: Mapping[str, dict[str, Any] | None],
    *,
    timeout: float,
    now: float,
    bus_error: str | None = None,
) -> dict[str, Any]:
    """Build the status view of every configured or replying instance.

    ``replies`` maps an instance name to the reports it sent for this request (more
    than one when several processes share a name). ``heartbeats`` maps the name of a
    configured instance that did not reply to its heartbeat record, or None when
    there is no file. ``now`` is the wall-clock time (``time.time()``) against which
    heartbeat ages are measured.
    """
    instances: dict[str, dict[str, Any]] = {}
    warnings = list(duplicate_name_warnings(configured))
    if bus_error:
        warnings.append(bus_error)

    for instance in configured:
        if instance.name in instances:
            continue  # a duplicate name, reported in the warnings
        reports = replies.get(instance.name) or []
        if reports:
            instances[instance.name] = _from_reply(reports[0], instance, now)
        else:
            heartbeat = heartbeats.get(instance.name)
            instances[instance.name] = _without_reply(instance, heartbeat, timeout, now)

    for name in sorted(replies):
        if name not in instances and replies[name]:
            instances[name] = _from_reply(replies[name][0], None, now)

    for name, reports in replies.items():
        pids = sorted({str(report.get("pid")) for report in reports})
        if len(reports) > 1:
            warnings.append(
                f"{len(reports)} engine processes replied as instance {name!r} "
                f"(pids {', '.join(pids)}); the first reply is shown."
            )

    if not configured and not replies:
        warnings.append(
            "no nats engine is configured under engines: in the master config, and no "
            "instance replied."
        )

    return {"master": master_id, "instances": instances, "warnings": warnings}


def exit_status(view: Mapping[str, Any]) -> int:
    """Return 1 when any instance is down or failed, or when there is no instance at all."""
    instances = view.get("instances") or {}
    if not instances:
        return 1
    if any(result.get("state") in UNHEALTHY_STATES for result in instances.values()):
        return 1
    return 0


def _from_reply(
    report: Mapping[str, Any], instance: ConfiguredInstance | None, now: float
) -> dict[str, Any]:
    result = _header(report.get("state"), SOURCE_REPLY, instance)
    result.update(_report_fields(report, now))
    return result


def _without_reply(
    instance: ConfiguredInstance,
    heartbeat: Mapping[str, Any] | None,
    timeout: float,
    now: float,
) -> dict[str, Any]:
    no_reply = f"no reply within {timeout:g} s"
    if heartbeat is None:
        result = _header(control.STATE_DOWN, SOURCE_NONE, instance)
        result["note"] = (
            f"{no_reply}, and no status file {instance.name}.json in {instance.status_dir}, "
            "so the engine is not running. Check the master log for 'salt-nats' and "
            "'Engine(' lines, and restart salt-master if engines: changed since it started."
        )
        return _with_config_error(result, instance)

    age = _heartbeat_age(heartbeat, now)
    if age is None or age > instance.stale_after:
        result = _header(control.STATE_DOWN, SOURCE_NONE, instance)
        result["last_state"] = heartbeat.get("state")
        result["heartbeat_age"] = None if age is None else round(age, 1)
        shown_age = "of unknown age" if age is None else f"{age:.0f} s old"
        result["note"] = (
            f"{no_reply}, and the last status file is {shown_age}, more than "
            f"{STALE_HEARTBEAT_INTERVALS} x heartbeat_interval ({instance.stale_after:g} s). "
            "The engine is not running or is stuck. Check the master log for 'salt-nats' lines."
        )
        return _with_config_error(result, instance)

    result = _header(heartbeat.get("state"), SOURCE_HEARTBEAT, instance)
    result.update(_report_fields(heartbeat, float(heartbeat["heartbeat_time"])))
    result["heartbeat_age"] = round(age, 1)
    result["note"] = (
        f"{no_reply}. Showing the status file written {age:.1f} s ago. The engine wrote "
        "this file recently but did not reply on the master bus, so it may be restarting, "
        "stuck, or disconnected from the bus."
    )
    return result


def _header(state: Any, source: str, instance: ConfiguredInstance | None) -> dict[str, Any]:
    return {
        "state": str(state) if state is not None else "unknown",
        "source": source,
        "configured": instance is not None,
        "entry": instance.entry if instance is not None else None,
    }


def _with_config_error(result: dict[str, Any], instance: ConfiguredInstance) -> dict[str, Any]:
    if instance.config_error:
        result["config_error"] = instance.config_error
    return result


def _heartbeat_age(heartbeat: Mapping[str, Any], now: float) -> float | None:
    written = heartbeat.get("heartbeat_time")
    if isinstance(written, bool) or not isinstance(written, (int, float)):
        return None
    if not math.isfinite(written):
        return None
    # A file from a clock that runs ahead counts as written just now.
    return max(now - float(written), 0.0)


def _report_fields(report: Mapping[str, Any], reported_at: float) -> dict[str, Any]:
    """Arrange one engine report: leading fields, counters, drops, errors, then the rest.

    ``reported_at`` is the wall-clock time at which the engine made the report.
    """
    fields: dict[str, Any] = {}
    for key in _LEADING_FIELDS:
        if key in report:
            fields[key] = _plain(report[key])

    counters = {}
    for key, value in report.items():
        if key in _NOT_COUNTERS or key in fields or isinstance(value, bool):
            continue
        if isinstance(value, int):
            counters[key] = value
    fields["counters"] = counters

    dropped = report.get("dropped")
    fields["dropped"] = _plain(dropped) if isinstance(dropped, Mapping) else {}

    fields["last_error"] = _plain(report.get("last_error"))
    fields["last_error_time"] = _error_time(report, reported_at)

    for key, value in report.items():
        if key in fields or key in counters or key in _OMITTED_FIELDS or key in _ERROR_FIELDS:
            continue
        fields[key] = _plain(value)
    return fields


def _error_time(report: Mapping[str, Any], reported_at: float) -> str | None:
    """Return the time of the last error as ISO 8601 text, or None.

    A failed instance reports no error time, but its error is the invalid config
    it found at start, so the time is its start: the report time minus its uptime.
    """
    value = report.get("last_error_time")
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return _iso(float(value))

    if report.get("state") != control.STATE_FAILED or not report.get("last_error"):
        return None
    started_at = report.get("started_at")
    if isinstance(started_at, str):
        return started_at
    uptime = report.get("uptime")
    if isinstance(uptime, (int, float)) and not isinstance(uptime, bool):
        return _iso(reported_at - float(uptime))
    return None


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()


def _plain(value: Any) -> Any:
    """Return ``value`` as JSON-like data that every Salt outputter can show."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    return str(value)
