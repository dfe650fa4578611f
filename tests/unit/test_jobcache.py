"""Unit tests of the job cache's key encoding and value format, with an in-memory bucket."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace
from typing import Any

import nats.js.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st

from salt_nats import codec
from salt_nats.jobcache import (
    CHUNKED_VALUE,
    INLINE_VALUE,
    JobCacheError,
    JobStore,
    decode_key_token,
    encode_key_token,
)
from salt_nats.returner import pack_salt_data, parse_returner_settings

# The characters nats-py accepts in a key-value key.
KV_KEY_RE = re.compile(r"^[-/_=.a-zA-Z0-9]+$")


# --- key tokens --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("20240101120000123456", "20240101120000123456"),
        ("20240101120000123456_4242", "20240101120000123456_4242"),
        ("web01.example.com", "web01=2Eexample=2Ecom"),
        ("wëb02", "w=C3=ABb02"),
        ("a=b", "a=3Db"),
        ("a/b c", "a=2Fb=20c"),
        ("db-1_x", "db-1_x"),
    ],
)
def test_encode_key_token_examples(text: str, token: str) -> None:
    assert encode_key_token(text) == token
    assert decode_key_token(token) == text


@given(st.text(alphabet=st.characters(codec=None), min_size=1))
def test_key_token_round_trip(text: str) -> None:
    token = encode_key_token(text)

    assert decode_key_token(token) == text
    assert KV_KEY_RE.match(token)
    assert "." not in token


def test_encode_key_token_rejects_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        encode_key_token("")


@pytest.mark.parametrize("token", ["", "a.b", "a b", "=2e", "=G1", "abc=", "=C3"])
def test_decode_key_token_rejects_invalid(token: str) -> None:
    with pytest.raises(ValueError, match="invalid key token"):
        decode_key_token(token)


# --- an in-memory bucket -------------------------------------------------------------------


class FakeBucket:
    """Enough of nats-py's KeyValue for the store's writes and point reads."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.values: dict[str, tuple[bytes, int]] = {}
        self._revision = 0

    def _store(self, key: str, value: bytes) -> int:
        self._revision += 1
        self.values[key] = (value, self._revision)
        return self._revision

    async def put(self, key: str, value: bytes) -> int:
        return self._store(key, value)

    async def create(self, key: str, value: bytes) -> int:
        if key in self.values:
            raise nats.js.errors.KeyWrongLastSequenceError(description="wrong last sequence")
        return self._store(key, value)

    async def update(self, key: str, value: bytes, last: int) -> int:
        if key not in self.values or self.values[key][1] != last:
            raise nats.js.errors.KeyWrongLastSequenceError(description="wrong last sequence")
        return self._store(key, value)

    async def get(self, key: str) -> Any:
        if key not in self.values:
            raise nats.js.errors.KeyNotFoundError
        value, revision = self.values[key]
        return SimpleNamespace(key=key, value=value, revision=revision)


class FakeJetStream:
    def __init__(self, buckets: dict[str, FakeBucket]) -> None:
        self.buckets = buckets
        self.purged: list[tuple[str, str]] = []

    async def purge_stream(self, stream: str, subject: str) -> bool:
        self.purged.append((stream, subject))
        bucket = self.buckets[stream.removeprefix("KV_")]
        prefix = subject.removeprefix(f"$KV.{bucket._name}.").removesuffix(">")
        for key in [key for key in bucket.values if key.startswith(prefix)]:
            del bucket.values[key]
        return True


def make_store() -> JobStore:
    settings, _ = parse_returner_settings({})
    buckets = {
        "salt_jobs": FakeBucket("salt_jobs"),
        "salt_job_returns": FakeBucket("salt_job_returns"),
    }
    js = FakeJetStream(buckets)
    client = SimpleNamespace(max_payload=64 * 1024, jetstream=lambda timeout: js)
    store = JobStore(client, settings, keep_jobs_seconds=3600)
    store.jobs = buckets["salt_jobs"]
    store.returns = buckets["salt_job_returns"]
    store.chunk_size = 1024
    return store


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


JID = "20240101120000123456"


# --- values ----------------------------------------------------------------------------------


def test_small_value_stored_inline() -> None:
    store = make_store()
    run(store.update_endtime(JID, "2024, Jan 01 12:00:01.000000"))

    value, _ = store.jobs.values[f"{JID}.endtime"]

    assert value[0] == INLINE_VALUE
    assert codec.unpack_data(value[1:]) == "2024, Jan 01 12:00:01.000000"
    assert run(store.get_endtime(JID)) == "2024, Jan 01 12:00:01.000000"


def test_large_value_stored_in_chunks() -> None:
    store = make_store()
    load = {"fun": "cmd.run", "arg": ["x" * 5000], "blob": bytes(range(256)) * 10}

    run(store.save_load(JID, load, None, keep_existing=False))
    manifest_value, _ = store.jobs.values[f"{JID}.load"]
    manifest = codec.unpack_data(manifest_value[1:])
    chunk_keys = [key for key in store.jobs.values if key.startswith(f"{JID}.load.")]

    assert manifest_value[0] == CHUNKED_VALUE
    assert manifest["chunks"] == len(chunk_keys) > 1
    assert manifest["size"] == len(pack_salt_data(load))
    assert run(store.get_load(JID)) == load


def test_missing_chunk_raises() -> None:
    store = make_store()
    run(store.save_load(JID, {"arg": ["x" * 5000]}, None, keep_existing=False))
    chunk_key = next(key for key in store.jobs.values if key.endswith(".1"))
    del store.jobs.values[chunk_key]

    with pytest.raises(JobCacheError, match="is incomplete: chunk 2 of"):
        run(store.get_load(JID))


def test_changed_chunk_raises() -> None:
    store = make_store()
    run(store.save_load(JID, {"arg": ["x" * 5000]}, None, keep_existing=False))
    chunk_key = next(key for key in store.jobs.values if key.endswith(".0"))
    value, revision = store.jobs.values[chunk_key]
    store.jobs.values[chunk_key] = (value[:-1] + b"?", revision)

    with pytest.raises(JobCacheError, match="do not match their manifest"):
        run(store.get_load(JID))


def test_unknown_value_format_raises() -> None:
    store = make_store()
    store.jobs.values[f"{JID}.load"] = (b"\x07junk", 1)

    with pytest.raises(JobCacheError, match="unknown value format 7"):
        run(store.get_load(JID))


def test_failed_create_of_chunked_value_purges_its_chunks() -> None:
    store = make_store()
    first = {"return": "a" * 3000}
    second = {"return": "b" * 3000}
    ret = {"jid": JID, "id": "web01"}
    run(store.prep_jid(JID, nocache=False, generated=True))

    assert run(store.save_return({**ret, **first})) == (True, False)
    keys_after_first = set(store.returns.values)
    assert run(store.save_return({**ret, **second})) == (False, False)

    assert set(store.returns.values) == keys_after_first
    assert store.js.purged
    assert run(store._read(store.returns, f"{JID}.web01")) == first


# --- job cache semantics ----------------------------------------------------------------------


def test_prep_jid_rejects_taken_generated_jid() -> None:
    store = make_store()

    assert run(store.prep_jid(JID, nocache=True, generated=True)) == (True, True)
    assert run(store.prep_jid(JID, nocache=False, generated=True)) == (False, False)
    assert run(store.prep_jid(JID, nocache=False, generated=False)) == (True, True)


def test_nocache_job_stores_no_returns() -> None:
    store = make_store()
    run(store.prep_jid(JID, nocache=True, generated=True))

    stored = run(store.save_return({"jid": JID, "id": "web01", "return": True}))

    assert stored == (False, True)
    assert store.returns.values == {}


def test_return_keeps_local_cache_keys_only() -> None:
    store = make_store()
    run(store.prep_jid(JID, nocache=False, generated=True))
    ret = {
        "jid": JID,
        "id": "web01.example.com",
        "fun": "state.apply",
        "fun_args": [],
        "return": {"a|b/c d": {"result": True}},
        "retcode": 0,
        "success": True,
        "out": "highstate",
    }

    run(store.save_return(ret))

    assert run(store._read(store.returns, f"{JID}.web01=2Eexample=2Ecom")) == {
        "return": {"a|b/c d": {"result": True}},
        "retcode": 0,
        "success": True,
        "out": "highstate",
    }


def test_return_load_never_replaces_stored_load() -> None:
    store = make_store()
    published = {"fun": "test.ping", "tgt": "*", "jid": JID}

    run(store.save_load(JID, published, ["web01"], keep_existing=False))
    stored = run(
        store.save_load(JID, {"fun": "test.ping", "return": True}, None, keep_existing=True)
    )

    assert stored is False
    assert run(store.get_load(JID)) == {**published, "Minions": ["web01"]}


def test_save_load_replaces_without_keep_existing() -> None:
    store = make_store()

    run(store.save_load(JID, {"fun": "a"}, None, keep_existing=False))
    run(store.save_load(JID, {"fun": "b"}, None, keep_existing=False))

    assert run(store.get_load(JID)) == {"fun": "b"}


def test_save_minions_merges_and_sorts() -> None:
    store = make_store()
    run(store.save_load(JID, {"fun": "test.ping"}, ["web02"], keep_existing=False))

    run(store.save_minions(JID, ["web01", "web02"]))
    run(store.save_minions(JID, ["db01"]))

    assert run(store.get_load(JID))["Minions"] == ["db01", "web01", "web02"]


def test_get_load_of_unknown_job_is_empty() -> None:
    store = make_store()
    run(store.save_minions(JID, ["web01"]))

    assert run(store.get_load(JID)) == {}
    assert run(store.get_endtime(JID)) is False
