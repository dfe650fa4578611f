"""The nats returner in real salt-masters and minions, with real nats-servers.

Two masters run side by side. ``cache-master`` has ``master_job_cache: nats`` and a
minion with a non-ASCII id that also publishes its returns (``--return nats``).
``reference-master`` keeps Salt's default ``local_cache``, so the same jobs run on
both show what the nats job cache must return. It also runs ``event_return: nats``
against a second nats-server, which one test restarts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import json
import time
from pathlib import Path
from typing import Any

import nats
import pytest
import salt.config
import salt.loader

from salt_nats import jobcache
from salt_nats.codec import decode_payload, unquote_id
from salt_nats.jobcache import JobStore, encode_key_token
from salt_nats.returner import parse_returner_settings, publish_return, return_msg_id
from salt_nats.subjects import parse_return_subject
from tests.support.bus import fire_events
from tests.support.collector import NatsCollector, ReceivedMessage
from tests.support.jetstream import create_stream, read_stream
from tests.support.nats_server import NatsServer, get_free_port

pytestmark = pytest.mark.integration

MINION_ID = "wëb02.example.com"
REFERENCE_MINION_ID = "web01.example.com"
# Salt trims returns and bus events above max_event_size (1 MiB by default) itself.
MAX_EVENT_SIZE = 8 * 1024 * 1024
TWO_MB = 2_000_000
BINARY_CONTENT = b"\x00\x01\xfe\xff salt\n"
STATE_NAME = "a b|c/d"


# --- daemons -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def events_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The nats-server of reference-master's event_return, separate so it can restart."""
    with NatsServer(tmp_path_factory.mktemp("events"), name="events", jetstream=True) as server:
        yield server


@pytest.fixture(scope="module")
def daemons(
    make_master: Any, make_minion: Any, nats_server_module: Any, events_server: Any
) -> dict[str, Any]:
    """Start both masters and both minions, each pair in parallel."""
    cache_master = make_master(
        extra_config={
            "master_job_cache": "nats",
            "nats": {"servers": [nats_server_module.url], "timeout": 5},
            "max_event_size": MAX_EVENT_SIZE,
        },
        master_id="cache-master",
        start=False,
    )
    reference_master = make_master(
        extra_config={
            "event_return": "nats",
            "nats": {
                "servers": [events_server.url],
                "timeout": 2,
                "reconnect_time_wait": 0.2,
            },
            "max_event_size": MAX_EVENT_SIZE,
        },
        master_id="reference-master",
        start=False,
    )
    start_in_parallel(cache_master, reference_master)

    cache_minion = make_minion(
        cache_master,
        MINION_ID,
        {
            "max_event_size": MAX_EVENT_SIZE,
            "nats": {"servers": [nats_server_module.url], "timeout": 5},
            "alternative.nats": {"subject_prefix": "alt.returns"},
            # Nothing listens on this port, so every connect attempt is refused.
            "unreachable.nats": {
                "servers": [f"nats://127.0.0.1:{get_free_port()}"],
                "timeout": 1,
            },
        },
        start=False,
    )
    reference_minion = make_minion(
        reference_master, REFERENCE_MINION_ID, {"max_event_size": MAX_EVENT_SIZE}, start=False
    )
    start_in_parallel(cache_minion, reference_minion)
    return {
        "cache_master": cache_master,
        "cache_minion": cache_minion,
        "reference_master": reference_master,
        "reference_minion": reference_minion,
    }


def start_in_parallel(*daemons: Any) -> None:
    with concurrent.futures.ThreadPoolExecutor(len(daemons)) as pool:
        for future in [pool.submit(daemon.start) for daemon in daemons]:
            future.result()


def in_parallel(*calls: Any) -> list[Any]:
    """Run each ``(function, *args)`` in a thread of its own and return the results."""
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call[0], *call[1:]) for call in calls]
        return [future.result() for future in futures]


def master_opts(master: Any) -> dict[str, Any]:
    return salt.config.master_config(master.config_file)


def returners(master: Any) -> Any:
    """Salt's returner functions in this process, with the master's config."""
    return salt.loader.returners(master_opts(master), {})


@pytest.fixture(scope="module")
def return_collector(nats_server_module: Any, daemons: Any) -> Any:
    with NatsCollector(nats_server_module.url, "*.returns.>") as collector:
        yield collector


# --- the same jobs on both masters ----------------------------------------------------


@pytest.fixture(scope="module")
def binary_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "binary.dat"
    path.write_bytes(BINARY_CONTENT)
    return path


@pytest.fixture(scope="module")
def jobs(daemons: Any, return_collector: Any, binary_file: Path) -> dict[str, dict[str, Any]]:
    """Run each job on both masters, ``--return nats`` on cache-master, and find its jids."""
    commands = {
        "state.single": ("test.succeed_with_changes", f"name={STATE_NAME}"),
        "cmd.run": (f"python3 -c \"print('x' * {TWO_MB})\"",),
        "file.read": (str(binary_file), "binary=True"),
        "test.echo": ("ünï 1",),
    }

    def run(master: Any, minion_id: str, fun: str, args: tuple[str, ...], extra: list[str]) -> Any:
        result = master.salt_cli(timeout=120).run(fun, *args, *extra, minion_tgt=minion_id)
        assert result.returncode == 0, result
        return result

    jids: dict[str, dict[str, Any]] = {}
    for fun, args in commands.items():
        in_parallel(
            (run, daemons["cache_master"], MINION_ID, fun, args, ["--return", "nats"]),
            (run, daemons["reference_master"], REFERENCE_MINION_ID, fun, args, []),
        )

    nats_jobs = returners(daemons["cache_master"])["nats.get_jids"]()
    local_jobs = returners(daemons["reference_master"])["local_cache.get_jids"]()
    for fun in commands:
        (jids.setdefault(fun, {})["nats"],) = [
            jid for jid, job in nats_jobs.items() if job["Function"] == fun
        ]
        (jids[fun]["local"],) = [jid for jid, job in local_jobs.items() if job["Function"] == fun]
    return jids


def renamed(value: Any, old: str, new: str) -> Any:
    """Copy ``value`` with every string ``old``, as a key or a value, replaced by ``new``."""
    if isinstance(value, dict):
        return {renamed(k, old, new): renamed(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed(item, old, new) for item in value]
    return new if value == old else value


def without_timing(returns: dict[str, Any]) -> dict[str, Any]:
    """Drop the per-run timing fields of state returns."""
    result = {}
    for minion_id, ret in returns.items():
        ret = dict(ret)
        if isinstance(ret.get("return"), dict):
            ret["return"] = {
                state_id: {k: v for k, v in state.items() if k not in ("start_time", "duration")}
                for state_id, state in ret["return"].items()
            }
        result[minion_id] = ret
    return result


def test_job_cache_returns_match_local_cache(daemons: Any, jobs: Any) -> None:
    nats_returners = returners(daemons["cache_master"])
    local_returners = returners(daemons["reference_master"])

    for fun, jid in jobs.items():
        nats_returns = nats_returners["nats.get_jid"](jid["nats"])
        local_returns = local_returners["local_cache.get_jid"](jid["local"])
        expected = renamed(without_timing(local_returns), REFERENCE_MINION_ID, MINION_ID)

        assert list(nats_returns) == [MINION_ID], fun
        assert without_timing(nats_returns) == expected, fun


def test_job_cache_loads_match_local_cache(daemons: Any, jobs: Any) -> None:
    nats_returners = returners(daemons["cache_master"])
    local_returners = returners(daemons["reference_master"])
    ignored = {"jid", "user", "ret", "tgt"}

    for fun, jid in jobs.items():
        nats_load = nats_returners["nats.get_load"](jid["nats"])
        local_load = local_returners["local_cache.get_load"](jid["local"])

        assert nats_load["jid"] == jid["nats"]
        assert nats_load["tgt"] == MINION_ID
        assert nats_load["Minions"] == [MINION_ID]
        assert nats_load["ret"] == "nats"
        shared_keys = {k: v for k, v in nats_load.items() if k not in ignored}
        local_keys = {k: v for k, v in local_load.items() if k not in ignored}
        assert renamed(shared_keys, MINION_ID, REFERENCE_MINION_ID) == local_keys, fun


def test_job_lists_match_local_cache(daemons: Any, jobs: Any) -> None:
    nats_returners = returners(daemons["cache_master"])
    local_returners = returners(daemons["reference_master"])
    nats_jobs = nats_returners["nats.get_jids"]()
    local_jobs = local_returners["local_cache.get_jids"]()

    for fun, jid in jobs.items():
        nats_job = dict(nats_jobs[jid["nats"]])
        local_job = dict(local_jobs[jid["local"]])
        assert nats_job.pop("StartTime")
        assert local_job.pop("StartTime")
        assert renamed(nats_job, MINION_ID, REFERENCE_MINION_ID) == local_job, fun

    nats_recent = nats_returners["nats.get_jids_filter"](3)
    local_recent = local_returners["local_cache.get_jids_filter"](3)
    assert [job["Function"] for job in nats_recent] == [job["Function"] for job in local_recent]
    assert [job["JID"] for job in nats_recent] == sorted(job["JID"] for job in nats_recent)


def test_job_cache_round_trips_types(daemons: Any, jobs: Any) -> None:
    get_jid = returners(daemons["cache_master"])["nats.get_jid"]

    binary = get_jid(jobs["file.read"]["nats"])[MINION_ID]["return"]
    big = get_jid(jobs["cmd.run"]["nats"])[MINION_ID]["return"]
    state = get_jid(jobs["state.single"]["nats"])[MINION_ID]["return"]
    echo = get_jid(jobs["test.echo"]["nats"])[MINION_ID]["return"]

    assert binary == BINARY_CONTENT
    assert big == "x" * TWO_MB
    assert list(state) == [f"test_|-{STATE_NAME}_|-{STATE_NAME}_|-succeed_with_changes"]
    assert echo == "ünï 1"


def test_get_fun_and_get_minions(daemons: Any, jobs: Any) -> None:
    nats_returners = returners(daemons["cache_master"])

    latest = nats_returners["nats.get_fun"]("test.echo")

    assert nats_returners["nats.get_minions"]() == [MINION_ID]
    assert latest[MINION_ID]["jid"] == jobs["test.echo"]["nats"]
    assert latest[MINION_ID]["return"] == "ünï 1"
    assert latest[MINION_ID]["fun"] == "test.echo"


def salt_run(master: Any, *args: str) -> Any:
    """Run salt-run with its own CLI object, because one object is not thread-safe."""
    result = master.salt_run_cli(timeout=60).run(*args)
    assert result.returncode == 0, result
    return result


def test_salt_run_jobs_match_local_cache(daemons: Any, jobs: Any) -> None:
    jid = jobs["state.single"]
    cache_master = daemons["cache_master"]
    reference_master = daemons["reference_master"]

    (nats_lookup, local_lookup, nats_print, local_print, nats_list, local_list) = in_parallel(
        (salt_run, cache_master, "jobs.lookup_jid", jid["nats"]),
        (salt_run, reference_master, "jobs.lookup_jid", jid["local"]),
        (salt_run, cache_master, "jobs.print_job", jid["nats"]),
        (salt_run, reference_master, "jobs.print_job", jid["local"]),
        (salt_run, cache_master, "jobs.list_jobs", "search_function=state.single"),
        (salt_run, reference_master, "jobs.list_jobs", "search_function=state.single"),
    )

    def normalized(data: Any, own_jid: str) -> Any:
        data = json.loads(json.dumps(data).replace(own_jid, "<jid>"))
        return renamed(data, REFERENCE_MINION_ID, MINION_ID)

    lookup = normalized(nats_lookup.data, jid["nats"])
    print_job = normalized(nats_print.data, jid["nats"])["<jid>"]
    listed = normalized(nats_list.data, jid["nats"])["<jid>"]
    expected_print = normalized(local_print.data, jid["local"])["<jid>"]
    expected_list = normalized(local_list.data, jid["local"])["<jid>"]

    expected_lookup = normalized(local_lookup.data, jid["local"])
    assert without_timing({"": {"return": lookup[MINION_ID]}}) == without_timing(
        {"": {"return": expected_lookup[MINION_ID]}}
    )
    for job, expected in ((print_job, expected_print), (listed, expected_list)):
        assert job.pop("StartTime")
        expected.pop("StartTime")
    assert without_timing(print_job.pop("Result")) == without_timing(expected_print.pop("Result"))
    assert print_job == expected_print
    assert listed == expected_list


# --- --return nats ----------------------------------------------------------------------


def returns_of(collector: NatsCollector, jid: str) -> list[ReceivedMessage]:
    return collector.wait_for(lambda m: m.subject.endswith(f".{jid}"), timeout=30)


def test_return_published_on_return_subject(jobs: Any, return_collector: Any) -> None:
    jid = jobs["test.echo"]["nats"]
    (message,) = returns_of(return_collector, jid)
    tag, data = decode_payload(message.data, message.headers["Content-Type"])

    assert message.subject == f"salt.returns.w%C3%ABb02%2Eexample%2Ecom.test%2Eecho.{jid}"
    assert parse_return_subject(message.subject) == (MINION_ID, "test.echo", jid)
    assert tag == f"salt/job/{jid}/ret/{MINION_ID}"
    assert data["return"] == "ünï 1"
    assert data["id"] == MINION_ID
    assert message.headers["Content-Type"] == "application/json"
    assert message.headers["Nats-Msg-Id"] == return_msg_id(jid, MINION_ID)
    assert unquote_id(message.headers["Salt-Origin"]) == MINION_ID
    assert "Salt-Master" not in message.headers


def test_return_bytes_and_truncated_output(jobs: Any, return_collector: Any) -> None:
    (binary,) = returns_of(return_collector, jobs["file.read"]["nats"])
    (big,) = returns_of(return_collector, jobs["cmd.run"]["nats"])
    _, binary_data = decode_payload(binary.data, binary.headers["Content-Type"])
    _, big_data = decode_payload(big.data, big.headers["Content-Type"])
    big_size = len(big.data) + sum(len(k) + len(v) + 4 for k, v in big.headers.items()) + 12

    assert binary_data["return"] == BINARY_CONTENT
    assert big.headers["Salt-Nats-Truncated"] == "1"
    assert big_data["return"].startswith("[salt-nats: value of about")
    assert big_size <= 1024 * 1024


def ping_with_return(master: Any, *options: str) -> Any:
    """Run ``test.ping --return nats`` with more options on the cache-master's minion."""
    salt_cli = master.salt_cli(timeout=30)
    result = salt_cli.run("test.ping", "--return", "nats", *options, minion_tgt=MINION_ID)
    assert result.returncode == 0, result
    return result


def test_return_config_and_kwargs(daemons: Any, return_collector: Any) -> None:
    master = daemons["cache_master"]
    kwargs = json.dumps({"subject_prefix": "kw.returns"})

    in_parallel(
        (ping_with_return, master, "--return_config", "alternative"),
        (ping_with_return, master, "--return_kwargs", kwargs),
    )
    (alternative,) = return_collector.wait_for(lambda m: m.subject.startswith("alt.returns."))
    (from_kwargs,) = return_collector.wait_for(lambda m: m.subject.startswith("kw.returns."))

    assert parse_return_subject(alternative.subject, "alt.returns")[:2] == (MINION_ID, "test.ping")
    assert parse_return_subject(from_kwargs.subject, "kw.returns")[:2] == (MINION_ID, "test.ping")
    assert "ret_kwargs" not in decode_payload(from_kwargs.data)[1]


def test_invalid_option_and_outage_logged_with_jid(daemons: Any, daemon_log: Any) -> None:
    master = daemons["cache_master"]
    minion_log = daemon_log(daemons["cache_minion"])
    since = minion_log.mark()

    in_parallel(
        (ping_with_return, master, "--return_kwargs", '{"format": "yaml"}'),
        (ping_with_return, master, "--return_config", "unreachable"),
    )

    job = r"return of job (\d{20}) from minion w\S+ not published"
    (invalid,) = minion_log.wait_for(job + r": invalid option 'format' = 'yaml'", since)
    (unreachable,) = minion_log.wait_for(job + r": NotConnectedError: not connected", since)

    assert "Fix: set format to one of: json, msgpack" in invalid
    assert "[ERROR" in unreachable


# --- deadlines without NATS -------------------------------------------------------------


def timed_publish(url: str, timeout: float) -> tuple[bool, float]:
    settings, _ = parse_returner_settings({"servers": [url], "timeout": timeout})
    ret = {"jid": "20240101000000000001", "id": MINION_ID, "fun": "test.ping", "return": True}
    started = time.monotonic()
    published = publish_return(settings, ret, master_id=None, node_id=f"deadline-{url}")
    return published, time.monotonic() - started


def test_publish_return_fails_at_once_when_refused() -> None:
    url = f"nats://127.0.0.1:{get_free_port()}"

    first, first_seconds = timed_publish(url, timeout=5)
    second, second_seconds = timed_publish(url, timeout=5)

    assert first is False
    assert second is False
    assert first_seconds < 1.0
    assert second_seconds < 0.5


def test_publish_return_deadline_with_paused_server(make_nats_server: Any) -> None:
    server = make_nats_server(name="paused")
    server.pause()

    first, first_seconds = timed_publish(server.url, timeout=1)
    second, second_seconds = timed_publish(server.url, timeout=1)

    assert first is False
    assert second is False
    assert 0.9 < first_seconds < 1.8
    assert second_seconds < 0.5


def test_job_cache_read_without_server_raises() -> None:
    url = f"nats://127.0.0.1:{get_free_port()}"
    cache = jobcache.JobCache(
        {"servers": [url], "timeout": 1}, keep_jobs_seconds=60, node_id="deadline-test"
    )

    started = time.monotonic()
    with pytest.raises(jobcache.JobCacheError, match="not connected to NATS"):
        cache.get_load("20240101000000000001")
    elapsed = time.monotonic() - started

    assert elapsed < 1.0


# --- event_return -------------------------------------------------------------------------


def stream_size(url: str, stream: str) -> int:
    async def size() -> int:
        client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1)
        try:
            return (await client.jetstream().stream_info(stream)).state.messages
        finally:
            await client.close()

    return asyncio.run(size())


def wait_for_stream_size(url: str, stream: str, size: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        current = stream_size(url, stream)
        if current >= size or time.monotonic() > deadline:
            return current
        time.sleep(0.25)


def test_event_return_survives_nats_restart(
    daemons: Any, events_server: Any, daemon_log: Any
) -> None:
    master = daemons["reference_master"]
    master_log = daemon_log(master)
    create_stream(events_server.url, "EVENT_RETURN", ["salt.events.test.er.>"])

    fire_events(master.config, "test/er", 10, start=0)
    assert wait_for_stream_size(events_server.url, "EVENT_RETURN", 10, timeout=20) == 10

    since = master_log.mark()
    events_server.stop()
    fire_events(master.config, "test/er", 10, start=10)
    # Longer than the returner's timeout of 2 s, so event_return gives up waiting.
    time.sleep(3)
    events_server.start()
    fire_events(master.config, "test/er", 10, start=20)
    wait_for_stream_size(events_server.url, "EVENT_RETURN", 30, timeout=30)

    messages = read_stream(events_server.url, "EVENT_RETURN")
    numbers = [decode_payload(m.data, m.headers["Content-Type"])[1]["n"] for m in messages]
    assert sorted(numbers) == list(range(30))
    assert len(numbers) == 30
    assert {m.headers["Salt-Master"] for m in messages} == {"reference-master"}
    assert master_log.lines_matching(r"event_return: not connected to NATS .* buffered", since)
    assert master_log.wait_for(r"event_return: published every buffered event after", since)


# --- expiry ----------------------------------------------------------------------------------


def test_expired_jobs_disappear(daemons: Any) -> None:
    import salt.runner

    opts = master_opts(daemons["cache_master"])
    opts["keep_jobs_seconds"] = 3
    opts["nats"] = {
        **opts["nats"],
        "kv_jobs_bucket": "expiry_jobs",
        "kv_returns_bucket": "expiry_returns",
    }
    functions = salt.loader.returners(opts, {})
    runner = salt.runner.RunnerClient(opts)

    jid = functions["nats.prep_jid"]()
    load = {"jid": jid, "fun": "test.ping", "arg": [], "tgt": MINION_ID, "tgt_type": "glob"}
    functions["nats.save_load"](jid, load, [MINION_ID])
    ret = {"jid": jid, "id": MINION_ID, "fun": "test.ping", "return": True, "retcode": 0}
    functions["nats.returner"](ret)

    assert jid in functions["nats.get_jids"]()
    assert runner.cmd("jobs.lookup_jid", [jid], print_event=False) == {MINION_ID: True}

    deadline = time.monotonic() + 10
    while jid in functions["nats.get_jids"]() and time.monotonic() < deadline:
        time.sleep(0.25)

    assert jid not in functions["nats.get_jids"]()
    assert runner.cmd("jobs.lookup_jid", [jid], print_event=False) == {}
    assert functions["nats.get_load"](jid) == {}

    # A return whose job marker is gone, as a late return of an expired job.
    late = {**ret, "jid": "20200101000000000000"}
    functions["nats.returner"](late)
    assert functions["nats.get_jid"](late["jid"]) == {MINION_ID: {"return": True, "retcode": 0}}

    functions["nats.clean_old_jobs"]()

    assert functions["nats.get_jid"](late["jid"]) == {}


def test_clean_old_jobs_removes_jobs_past_keep(nats_server_module: Any) -> None:
    url = nats_server_module.url
    options = {"servers": [url], "kv_jobs_bucket": "clean_jobs", "kv_returns_bucket": "clean_ret"}
    settings, _ = parse_returner_settings(options)
    jid = "20240101000000000001"

    async def scenario() -> dict[str, Any]:
        client = await nats.connect(url)
        try:
            store = JobStore(client, settings, keep_jobs_seconds=3600)
            await store.open()
            await store.prep_jid(jid, nocache=False, generated=True)
            await store.save_load(jid, {"fun": "test.ping"}, [MINION_ID], keep_existing=False)
            await store.save_return({"jid": jid, "id": MINION_ID, "return": True})
            removed_fresh = await store.clean_old_jobs()
            load_before = await store.get_load(jid)

            later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)
            removed = await store.clean_old_jobs(now=later)
            info = await client.jetstream().stream_info("KV_clean_jobs")

            reopened = JobStore(client, settings, keep_jobs_seconds=0)
            await reopened.open()
            info_after = await client.jetstream().stream_info("KV_clean_jobs")
            return {
                "removed_fresh": removed_fresh,
                "load_before": load_before,
                "removed": removed,
                "load_after": await store.get_load(jid),
                "returns_after": await store.get_jid(jid),
                "max_age": info.config.max_age,
                "max_age_after": info_after.config.max_age,
            }
        finally:
            await client.close()

    result = asyncio.run(scenario())

    assert result["removed_fresh"] == (0, 0)
    assert result["load_before"] == {"fun": "test.ping", "Minions": [MINION_ID]}
    assert result["removed"] == (1, 0)
    assert result["load_after"] == {}
    assert result["returns_after"] == {}
    assert result["max_age"] == 3600
    assert not result["max_age_after"]


def test_chunked_values_round_trip(nats_server_module: Any) -> None:
    url = nats_server_module.url
    options = {"servers": [url], "kv_jobs_bucket": "chunk_jobs", "kv_returns_bucket": "chunk_ret"}
    settings, _ = parse_returner_settings(options)
    jid = "20240101000000000002"
    value = {"return": {"bytes": bytes(range(256)) * 400, "text": "ä" * 50_000}, "retcode": 0}

    async def scenario() -> tuple[Any, list[str]]:
        client = await nats.connect(url)
        try:
            store = JobStore(client, settings, keep_jobs_seconds=60)
            await store.open()
            store.chunk_size = 16 * 1024
            await store.prep_jid(jid, nocache=False, generated=True)
            await store.save_return({"jid": jid, "id": MINION_ID, **value})
            keys = await store.returns.keys()
            return await store.get_jid(jid), keys
        finally:
            await client.close()

    returns, keys = asyncio.run(scenario())
    token = f"{jid}.{encode_key_token(MINION_ID)}"

    assert returns == {MINION_ID: value}
    assert token in keys
    assert len([key for key in keys if key.startswith(token + ".")]) > 1


# --- NATS outage -----------------------------------------------------------------------------


def test_salt_command_works_while_job_cache_is_down(
    daemons: Any, nats_server_module: Any, daemon_log: Any
) -> None:
    # Runs last in this module: it stops the server that the other tests share.
    master = daemons["cache_master"]
    master_log = daemon_log(master)
    since = master_log.mark()

    nats_server_module.stop()
    try:
        started = time.monotonic()
        result = master.salt_cli(timeout=60).run("test.ping", minion_tgt=MINION_ID)
        elapsed = time.monotonic() - started
    finally:
        nats_server_module.start()

    assert result.returncode == 0, result
    assert result.data is True
    assert elapsed < 10
    markers = master_log.lines_matching(r"job cache: job marker of job \d{20} not stored", since)
    assert markers
    jid = markers[0].split("job marker of job ")[1].split()[0]
    assert master_log.wait_for(
        rf"job cache: return of minion w\S+ of job {jid} not stored: NotConnectedError", since
    )
