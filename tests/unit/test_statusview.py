"""Tests for salt_nats.statusview: engines: entries, replies and heartbeats into one view."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from salt_nats import control, statusview
from salt_nats.statusview import ConfiguredInstance

NOW = 1_800_000_000.0
STATUS_DIR = "/var/cache/salt/master/salt-nats"


def report(name: str = "nats", state: str = "connected", **fields: Any) -> dict[str, Any]:
    """Return an engine report shaped like Forwarder.report()."""
    base: dict[str, Any] = {
        "instance": name,
        "master": "salt01",
        "state": state,
        "server": "nats://127.0.0.1:4222",
        "mode": "core",
        "format": "json",
        "subject_prefix": "salt.events",
        "pid": 4242,
        "version": "0.1.0",
        "started_at": "2027-01-15T08:00:00+00:00",
        "buffered": 0,
        "buffered_bytes": 0,
        "inflight": 0,
        "lag_seconds": 0.0,
        "uptime": 120.5,
        "received": 10,
        "filtered": 2,
        "published": 8,
        "acknowledged": 0,
        "retried": 0,
        "duplicates": 0,
        "truncated": 0,
        "dropped": {},
        "dropped_total": 0,
        "bus_connects": 1,
        "bus_disconnects": 0,
        "nats_connects": 1,
        "nats_disconnects": 0,
        "nats_reconnects": 0,
        "nats_errors": 0,
        "last_error": None,
        "last_error_time": None,
    }
    base.update(fields)
    return base


def failed_report(name: str = "broken", uptime: float = 30.0) -> dict[str, Any]:
    """Return a report shaped like FailedInstance.report()."""
    return {
        "instance": name,
        "master": "salt01",
        "state": "failed",
        "pid": 777,
        "uptime": uptime,
        "last_error": "invalid option 'buffer_max_events' = 0: out of range. Fix: ...",
    }


def configured(engines: Any) -> list[ConfiguredInstance]:
    return statusview.configured_instances(engines, STATUS_DIR)


def build(
    engines: Any,
    replies: dict[str, list[dict[str, Any]]] | None = None,
    heartbeats: dict[str, dict[str, Any] | None] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    return statusview.build_status(
        "salt01",
        configured(engines),
        replies or {},
        heartbeats or {},
        timeout=3.0,
        now=NOW,
        **kwargs,
    )


# nats_engine_entries and instance_name


@pytest.mark.parametrize(
    ("engines", "expected"),
    [
        (["nats"], [("nats", None)]),
        ([{"nats": {"servers": "nats://a:4222"}}], [("nats", {"servers": "nats://a:4222"})]),
        ([{"nats": None}], [("nats", None)]),
        (
            [{"bus-a": {"engine_module": "nats", "servers": "nats://a:4222"}}],
            [("bus-a", {"servers": "nats://a:4222"})],
        ),
        ({"nats": {"name": "x"}}, [("nats", {"name": "x"})]),
        (["pytest", {"reactor": {}}, {"audit": {"engine_module": "webhook"}}], []),
        ([{"nats": {"engine_module": "webhook"}}], []),
        ([{"a": {}, "b": {}}], []),
        (None, []),
        ("nats", []),
    ],
)
def test_engine_entries_forms(engines: Any, expected: list[tuple[str, Any]]) -> None:
    assert statusview.nats_engine_entries(engines) == expected


def test_engine_entries_keep_input_unchanged() -> None:
    engines = [{"bus-a": {"engine_module": "nats", "servers": "nats://a:4222"}}]

    statusview.nats_engine_entries(engines)

    assert engines == [{"bus-a": {"engine_module": "nats", "servers": "nats://a:4222"}}]


@pytest.mark.parametrize(
    ("entry", "options", "expected"),
    [
        ("nats", None, "nats"),
        ("nats", {}, "nats"),
        ("nats", {"name": "prod-bus"}, "prod-bus"),
        ("bus-a", {}, "bus-a"),
        ("bus-a", {"name": "other"}, "other"),
        ("bus-a", {"name": ""}, "bus-a"),
        ("nats", {"name": 5}, "nats"),
    ],
)
def test_instance_name_rules(entry: str, options: Any, expected: str) -> None:
    assert statusview.instance_name(entry, options) == expected


# configured_instances


def test_configured_defaults() -> None:
    (instance,) = configured(["nats"])

    assert instance.name == "nats"
    assert instance.entry == "nats"
    assert instance.status_dir == STATUS_DIR
    assert instance.heartbeat_interval == 10.0
    assert instance.stale_after == 30.0
    assert instance.config_error is None
    assert instance.settings is not None


def test_configured_status_dir_and_interval() -> None:
    (instance,) = configured([{"nats": {"status_dir": "/srv/status", "heartbeat_interval": 2}}])

    assert instance.status_dir == "/srv/status"
    assert instance.heartbeat_interval == 2.0
    assert instance.stale_after == 6.0


def test_configured_invalid_options_use_defaults() -> None:
    (instance,) = configured(
        [{"broken": {"engine_module": "nats", "buffer_max_events": 0, "heartbeat_interval": 2}}]
    )

    assert instance.name == "broken"
    assert instance.settings is None
    assert "buffer_max_events" in instance.config_error
    # FailedInstance ignores the options, so the runner must look where it writes.
    assert instance.status_dir == STATUS_DIR
    assert instance.heartbeat_interval == 10.0


def test_configured_options_not_mapping() -> None:
    (instance,) = configured([{"nats": "nats://a:4222"}])

    assert instance.name == "nats"
    assert "not a mapping" in instance.config_error


def test_configured_config_error_hides_password() -> None:
    (instance,) = configured([{"nats": {"password": "hunter2"}}])

    assert "password" in instance.config_error
    assert "hunter2" not in instance.config_error


# build_status: replies


def test_reply_connected_layout() -> None:
    view = build(["nats"], {"nats": [report()]})
    result = view["instances"]["nats"]

    assert view["master"] == "salt01"
    assert view["warnings"] == []
    assert result["state"] == "connected"
    assert result["source"] == "reply"
    assert result["configured"] is True
    assert result["entry"] == "nats"
    assert result["server"] == "nats://127.0.0.1:4222"
    assert result["uptime"] == 120.5
    assert result["lag_seconds"] == 0.0
    assert result["pid"] == 4242
    assert result["dropped"] == {}
    assert result["last_error"] is None
    assert result["last_error_time"] is None
    assert "note" not in result


def test_reply_counters_grouped() -> None:
    view = build(["nats"], {"nats": [report(dropped={"buffer_full": 3}, dropped_total=3)]})
    result = view["instances"]["nats"]

    assert result["counters"]["received"] == 10
    assert result["counters"]["published"] == 8
    assert result["counters"]["filtered"] == 2
    assert result["counters"]["acknowledged"] == 0
    assert result["counters"]["buffered"] == 0
    assert result["counters"]["dropped_total"] == 3
    assert result["dropped"] == {"buffer_full": 3}
    assert "pid" not in result["counters"]
    assert "received" not in result


def test_reply_unknown_counter_kept() -> None:
    view = build(["nats"], {"nats": [report(spooled=12, spool_bytes=4096, spool_path="/x")]})
    result = view["instances"]["nats"]

    assert result["counters"]["spooled"] == 12
    assert result["counters"]["spool_bytes"] == 4096
    assert result["spool_path"] == "/x"


def test_reply_error_time_kept() -> None:
    view = build(
        ["nats"],
        {
            "nats": [
                report(
                    state="reconnecting",
                    last_error="connect failed: ConnectionRefusedError()",
                    last_error_time="2027-01-15T08:01:00+00:00",
                )
            ]
        },
    )
    result = view["instances"]["nats"]

    assert result["state"] == "reconnecting"
    assert result["last_error"] == "connect failed: ConnectionRefusedError()"
    assert result["last_error_time"] == "2027-01-15T08:01:00+00:00"


def test_reply_float_error_time_as_iso() -> None:
    view = build(["nats"], {"nats": [report(last_error="x", last_error_time=NOW)]})

    assert view["instances"]["nats"]["last_error_time"] == "2027-01-15T08:00:00+00:00"


def test_failed_reply_error_time_from_uptime() -> None:
    view = build(
        [{"broken": {"engine_module": "nats", "buffer_max_events": 0}}],
        {"broken": [failed_report(uptime=60.0)]},
    )
    result = view["instances"]["broken"]

    assert result["state"] == "failed"
    assert "buffer_max_events" in result["last_error"]
    assert result["last_error_time"] == "2027-01-15T07:59:00+00:00"


def test_unconfigured_reply_listed_after_configured() -> None:
    view = build(["nats"], {"old-bus": [report("old-bus")], "nats": [report()]})

    assert list(view["instances"]) == ["nats", "old-bus"]
    assert view["instances"]["old-bus"]["configured"] is False
    assert view["instances"]["old-bus"]["entry"] is None
    assert view["instances"]["old-bus"]["state"] == "connected"


def test_two_processes_one_name_warned() -> None:
    view = build(["nats"], {"nats": [report(pid=1), report(pid=2)]})

    assert view["instances"]["nats"]["pid"] == 1
    (warning,) = view["warnings"]
    assert "2 engine processes replied as instance 'nats'" in warning
    assert "1, 2" in warning


def test_duplicate_entry_names_warned() -> None:
    view = build([{"nats": {}}, {"nats": {"servers": "nats://b:4222"}}], {"nats": [report()]})

    assert list(view["instances"]) == ["nats"]
    (warning,) = view["warnings"]
    assert "run as instance 'nats'" in warning
    assert "name option" in warning


# build_status: no reply


def test_no_reply_no_heartbeat_down() -> None:
    view = build([{"bus-a": {"engine_module": "nats"}}], heartbeats={"bus-a": None})
    result = view["instances"]["bus-a"]

    assert result["state"] == "down"
    assert result["source"] == "none"
    assert "no reply within 3 s" in result["note"]
    assert f"no status file bus-a.json in {STATUS_DIR}" in result["note"]
    assert "config_error" not in result


def test_no_reply_fresh_heartbeat_shown() -> None:
    heartbeat = {**report("bus-a"), "heartbeat_time": NOW - 12.0}
    view = build([{"bus-a": {"engine_module": "nats"}}], heartbeats={"bus-a": heartbeat})
    result = view["instances"]["bus-a"]

    assert result["state"] == "connected"
    assert result["source"] == "heartbeat"
    assert result["heartbeat_age"] == 12.0
    assert result["counters"]["received"] == 10
    assert "did not reply" in result["note"]
    assert "12.0 s ago" in result["note"]
    assert "heartbeat_time" not in result


def test_no_reply_stale_heartbeat_down() -> None:
    heartbeat = {**report("bus-a"), "heartbeat_time": NOW - 31.0}
    view = build([{"bus-a": {"engine_module": "nats"}}], heartbeats={"bus-a": heartbeat})
    result = view["instances"]["bus-a"]

    assert result["state"] == "down"
    assert result["last_state"] == "connected"
    assert result["heartbeat_age"] == 31.0
    assert "31 s old" in result["note"]
    assert "3 x heartbeat_interval (30 s)" in result["note"]


def test_stale_limit_follows_interval() -> None:
    engines = [{"bus-a": {"engine_module": "nats", "heartbeat_interval": 1}}]
    heartbeat = {**report("bus-a"), "heartbeat_time": NOW - 3.5}

    result = build(engines, heartbeats={"bus-a": heartbeat})["instances"]["bus-a"]

    assert result["state"] == "down"


def test_heartbeat_from_future_is_fresh() -> None:
    heartbeat = {**report("bus-a"), "heartbeat_time": NOW + 5.0}
    view = build([{"bus-a": {"engine_module": "nats"}}], heartbeats={"bus-a": heartbeat})

    assert view["instances"]["bus-a"]["state"] == "connected"
    assert view["instances"]["bus-a"]["heartbeat_age"] == 0.0


@pytest.mark.parametrize("written", [None, "yesterday", float("nan"), True])
def test_heartbeat_without_time_down(written: Any) -> None:
    heartbeat = {**report("bus-a"), "heartbeat_time": written}
    view = build([{"bus-a": {"engine_module": "nats"}}], heartbeats={"bus-a": heartbeat})
    result = view["instances"]["bus-a"]

    assert result["state"] == "down"
    assert result["heartbeat_age"] is None
    assert "of unknown age" in result["note"]


def test_fresh_failed_heartbeat_failed() -> None:
    heartbeat = {**failed_report(), "heartbeat_time": NOW - 2.0}
    view = build(
        [{"broken": {"engine_module": "nats", "buffer_max_events": 0}}],
        heartbeats={"broken": heartbeat},
    )

    assert view["instances"]["broken"]["state"] == "failed"
    assert view["instances"]["broken"]["last_error_time"] == "2027-01-15T07:59:28+00:00"
    assert statusview.exit_status(view) == 1


def test_down_shows_config_error() -> None:
    view = build(
        [{"broken": {"engine_module": "nats", "buffer_max_events": 0}}],
        heartbeats={"broken": None},
    )
    result = view["instances"]["broken"]

    assert result["state"] == "down"
    assert "buffer_max_events" in result["config_error"]


def test_bus_error_in_warnings() -> None:
    view = build(["nats"], heartbeats={"nats": None}, bus_error="cannot subscribe")

    assert view["warnings"] == ["cannot subscribe"]


def test_nothing_configured_warned() -> None:
    view = build(["pytest"])

    assert view["instances"] == {}
    (warning,) = view["warnings"]
    assert "no nats engine is configured" in warning


def test_heartbeat_file_round_trip(tmp_path: Any) -> None:
    control.write_heartbeat(tmp_path, "bus-a", report("bus-a", state="buffering"))
    heartbeat = control.read_heartbeat(tmp_path, "bus-a")
    engines = [{"bus-a": {"engine_module": "nats", "status_dir": str(tmp_path)}}]

    view = statusview.build_status(
        "salt01",
        configured(engines),
        {},
        {"bus-a": heartbeat},
        timeout=3.0,
        now=heartbeat["heartbeat_time"] + 1.0,
    )

    assert view["instances"]["bus-a"]["state"] == "buffering"
    assert view["instances"]["bus-a"]["heartbeat_age"] == 1.0


# exit_status


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (["connected"], 0),
        (["connected", "reconnecting", "buffering", "connecting", "stopped"], 0),
        (["connected", "down"], 1),
        (["failed"], 1),
        ([], 1),
    ],
)
def test_exit_status_by_states(states: list[str], expected: int) -> None:
    view = {"instances": {f"i{n}": {"state": state} for n, state in enumerate(states)}}

    assert statusview.exit_status(view) == expected


# output


def test_view_is_plain_data() -> None:
    heartbeat = {**report("bus-b", custom={"nested": (1, 2)}), "heartbeat_time": NOW - 1}
    view = build(
        [{"bus-a": {"engine_module": "nats"}}, {"bus-b": {"engine_module": "nats"}}],
        {"bus-a": [report("bus-a", lag_seconds=float("inf"))]},
        {"bus-b": heartbeat},
    )

    text = json.dumps(view, allow_nan=False)

    assert json.loads(text) == view
    assert yaml.safe_load(yaml.safe_dump(view)) == view
    assert view["instances"]["bus-a"]["lag_seconds"] == "inf"
    assert view["instances"]["bus-b"]["custom"] == {"nested": [1, 2]}
