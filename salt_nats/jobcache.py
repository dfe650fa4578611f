"""Salt's master job cache in two JetStream key-value buckets.

Key layout, where ``<jid>`` and ``<minion>`` are tokens made by
:func:`encode_key_token`:

Jobs bucket (option ``kv_jobs_bucket``, default ``salt_jobs``):

* ``<jid>.jid``: the job marker that ``prep_jid`` writes, ``{"nocache": bool}``
* ``<jid>.load``: the job's load, the command as the master published it
* ``<jid>.minions``: the sorted list of targeted minion ids
* ``<jid>.endtime``: the end time string, when ``job_cache_store_endtime`` is on

Returns bucket (option ``kv_returns_bucket``, default ``salt_job_returns``):

* ``<jid>.<minion>``: ``return``, ``retcode``, ``success`` and ``out``, the keys that
  Salt's ``local_cache`` keeps

Every value starts with one format byte. ``0x00`` is followed by the msgpack data
(:func:`salt_nats.codec.pack_data`, which keeps bytes, datetimes and Salt's constants).
A value larger than one message is chunked. Then ``0x01`` is followed by a msgpack
manifest ``{"version", "chunks", "size", "sha256"}``, and the packed data is in the
keys ``<key>.<version>.0`` to ``<key>.<version>.<chunks - 1>``. The chunks are
written first and the manifest last, so a reader never finds a manifest whose
chunks were not written.

Each bucket's max age follows ``keep_jobs_seconds`` (0 keeps jobs forever), so
JetStream expires each entry that long after it was written. :meth:`JobStore.clean_old_jobs`
removes what remains of a job: jobs whose marker is older, and returns or loads
whose marker is gone, for example because they were written after it and expire later.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.aio.client import Client
from nats.js.api import StorageType
from nats.js.kv import KeyValue

from salt_nats import codec, sync
from salt_nats.config import ConfigError
from salt_nats.returner import (
    ReturnerSettings,
    describe_error,
    load_settings,
    pack_salt_data,
    shared_client_for,
)

log = logging.getLogger(__name__)

# First byte of every stored value.
INLINE_VALUE = 0x00
CHUNKED_VALUE = 0x01

# Bytes of max_payload left for the message headers when a value is split into chunks.
CHUNK_HEADROOM = 16 * 1024
MIN_CHUNK_SIZE = 4 * 1024

# The keys local_cache keeps of a return; the returns bucket stores the same.
RETURN_KEYS = ("return", "retcode", "success", "out")

# Jobs whose marker and load a JobCache remembers, so that the many returns of one
# job cost one request each.
KNOWN_JOBS = 1024

# Deadline of clean_old_jobs, which scans both buckets, in seconds.
CLEAN_TIMEOUT = 60.0

# Idle time after which the server removes a scan's consumer, in seconds.
SCAN_INACTIVE_THRESHOLD = 30.0

_TOKEN_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_TOKEN_TEXT_BY_BYTE = tuple(
    chr(byte) if byte in _TOKEN_SAFE_BYTES else f"={byte:02X}" for byte in range(256)
)
_TOKEN_RE = re.compile(r"(?:[A-Za-z0-9_-]|=[0-9A-F]{2})+")
_ESCAPE_RE = re.compile(r"=([0-9A-F]{2})")


class JobCacheError(RuntimeError):
    """The job cache could not be read, or contains a value that cannot be decoded."""


# -- keys -------------------------------------------------------------------------


def encode_key_token(text: str) -> str:
    """Encode a jid or minion id as one key token.

    Letters, digits, ``_`` and ``-`` stay as they are. Every other UTF-8 byte becomes
    ``=XX`` with two uppercase hex digits, so ``web01.example.com`` becomes
    ``web01=2Eexample=2Ecom``. Lone surrogates are encoded too, and
    :func:`decode_key_token` reverses the encoding exactly. Raises ValueError for an
    empty string, which cannot be a token.
    """
    if not text:
        raise ValueError("an empty jid or minion id cannot be a key token")
    return "".join([_TOKEN_TEXT_BY_BYTE[byte] for byte in text.encode("utf-8", "surrogatepass")])


def decode_key_token(token: str) -> str:
    """Decode a key token made by :func:`encode_key_token`.

    Raises ValueError for a token that the encoder never writes: an empty one, one
    with other characters, or ``=`` without two uppercase hex digits after it.
    """
    if not _TOKEN_RE.fullmatch(token):
        raise ValueError(
            f"invalid key token {token!r}: expected letters, digits, '_', '-' and "
            "'=XX' escapes with uppercase hex digits"
        )
    data = _ESCAPE_RE.sub(lambda match: chr(int(match[1], 16)), token)
    try:
        return data.encode("latin-1").decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid key token {token!r}: its escapes are not UTF-8") from exc


def _job_key(jid: str, name: str) -> str:
    return f"{encode_key_token(jid)}.{name}"


def _return_key(jid: str, minion_id: str) -> str:
    return f"{encode_key_token(jid)}.{encode_key_token(minion_id)}"


# -- the store --------------------------------------------------------------------


class _Missing:
    """The result of reading a key that does not exist."""


MISSING = _Missing()


class JobStore:
    """The job cache operations on one connected client; every method runs on its loop."""

    def __init__(self, client: Client, settings: ReturnerSettings, keep_jobs_seconds: float):
        self.client = client
        self.settings = settings
        self.keep_jobs_seconds = keep_jobs_seconds
        self.js = client.jetstream(timeout=settings.timeout)
        self.chunk_size = max(client.max_payload - CHUNK_HEADROOM, MIN_CHUNK_SIZE)
        self.jobs: KeyValue | None = None
        self.returns: KeyValue | None = None

    async def open(self) -> None:
        """Open both buckets, creating them or updating their max age as needed."""
        self.jobs = await self._open_bucket(
            self.settings.kv_jobs_bucket, "Salt master job cache: job markers, loads, minions"
        )
        self.returns = await self._open_bucket(
            self.settings.kv_returns_bucket, "Salt master job cache: minion returns"
        )

    async def _open_bucket(self, bucket: str, description: str) -> KeyValue:
        stream = _stream_name(bucket)
        max_age = float(self.keep_jobs_seconds) if self.keep_jobs_seconds > 0 else 0.0
        try:
            info = await self.js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            try:
                kv = await self.js.create_key_value(
                    bucket=bucket,
                    description=description,
                    history=1,
                    ttl=max_age or None,
                    replicas=self.settings.kv_replicas,
                    storage=StorageType(self.settings.kv_storage),
                    direct=True,
                )
            except nats.js.errors.APIError:
                # Another process may have created it in the meantime; if not, the
                # stream_info below raises the real problem.
                info = await self.js.stream_info(stream)
            else:
                log.info("salt-nats job cache: created bucket %s (max age %s s)", bucket, max_age)
                return kv

        current = float(info.config.max_age or 0.0)
        if abs(current - max_age) > 0.001:
            config = info.config
            config.max_age = max_age
            # JetStream requires a duplicate window no longer than the max age.
            config.duplicate_window = min(max_age, 120.0) if max_age else 120.0
            await self.js.update_stream(config)
            log.info(
                "salt-nats job cache: changed the max age of bucket %s from %s s to %s s "
                "to follow keep_jobs_seconds",
                bucket,
                current,
                max_age,
            )
        return await self.js.key_value(bucket)

    # -- writing --

    async def prep_jid(self, jid: str, nocache: bool, generated: bool) -> tuple[bool, bool]:
        """Store the job marker; return whether the jid is usable and its ``nocache``.

        A generated jid whose marker exists already is not usable. A passed jid
        always is, and its existing marker is kept.
        """
        key = _job_key(jid, "jid")
        if not generated:
            marker = await self._read(self.jobs, key)
            if marker is not MISSING:
                return True, _nocache_of(marker)

        try:
            await self._write(self.jobs, key, pack_salt_data({"nocache": bool(nocache)}), 0)
        except nats.js.errors.KeyWrongLastSequenceError:
            if generated:
                return False, bool(nocache)
            return True, _nocache_of(await self._read(self.jobs, key))
        return True, bool(nocache)

    async def save_load(
        self, jid: str, load: Mapping[str, Any], minions: list[str] | None, keep_existing: bool
    ) -> bool:
        """Store a job's load, and its minion list when ``minions`` is given.

        With ``keep_existing`` an existing load stays, and the call returns False.
        """
        key = _job_key(jid, "load")
        packed = pack_salt_data(load)
        if keep_existing:
            try:
                await self._write(self.jobs, key, packed, 0)
            except nats.js.errors.KeyWrongLastSequenceError:
                return False
        else:
            await self._write(self.jobs, key, packed, None)

        if minions is not None:
            await self.save_minions(jid, minions)
        return True

    async def save_minions(self, jid: str, minions: Iterable[str]) -> None:
        """Merge ``minions`` into the job's minion list.

        Concurrent writers are merged, not overwritten: the update expects the
        revision it read and starts over when another writer came first.
        """
        key = _job_key(jid, "minions")
        added = {str(minion) for minion in minions}
        for _attempt in range(8):
            try:
                entry = await self.jobs.get(key)
            except nats.js.errors.KeyNotFoundError:
                entry = None
            current: set[str] = set()
            if entry is not None:
                current = set(await self._decode(self.jobs, key, entry.value) or ())
            merged = current | added
            if entry is not None and merged == current:
                return
            try:
                await self._write(
                    self.jobs, key, pack_salt_data(sorted(merged)), entry.revision if entry else 0
                )
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
        raise JobCacheError(f"the minion list of job {jid} kept changing during 8 updates")

    async def save_return(
        self, ret: Mapping[str, Any], nocache: bool | None = None
    ) -> tuple[bool, bool]:
        """Store one minion's return; return whether it was stored and the job's ``nocache``.

        A job prepared with ``nocache`` stores no returns; pass ``nocache`` when it is
        known, else the job marker is read. The first return of a minion for a job
        stays, as in ``local_cache``; a second one is logged and skipped.
        """
        jid = str(ret["jid"])
        minion_id = str(ret["id"])
        if nocache is None:
            nocache = _nocache_of(await self._read(self.jobs, _job_key(jid, "jid")))
        if nocache:
            return False, True

        value = {key: ret[key] for key in RETURN_KEYS if key in ret}
        try:
            await self._write(self.returns, _return_key(jid, minion_id), pack_salt_data(value), 0)
        except nats.js.errors.KeyWrongLastSequenceError:
            log.debug(
                "salt-nats job cache: duplicate return from minion %s for job %s; "
                "the first one stays",
                minion_id,
                jid,
            )
            return False, False
        return True, False

    async def update_endtime(self, jid: str, end_time: str) -> None:
        """Store the job's end time."""
        await self._write(self.jobs, _job_key(jid, "endtime"), pack_salt_data(str(end_time)), None)

    # -- reading --

    async def get_load(self, jid: str) -> dict[str, Any]:
        """Return the job's load with ``Minions`` added, or ``{}`` when it has none."""
        load, minions = await asyncio.gather(
            self._read(self.jobs, _job_key(jid, "load")),
            self._read(self.jobs, _job_key(jid, "minions")),
        )
        if load is MISSING or load is None:
            return {}
        if not isinstance(load, dict):
            raise JobCacheError(f"the load of job {jid} is a {type(load).__name__}, not a map")
        if minions is not MISSING and minions:
            load["Minions"] = sorted(minions)
        return load

    async def get_jid(self, jid: str) -> dict[str, dict[str, Any]]:
        """Return each minion's return for the job, keyed by minion id."""
        result = {}
        for entry in await self._scan(self.returns, f"{encode_key_token(jid)}.*"):
            minion_id = decode_key_token(entry.key.split(".")[1])
            result[minion_id] = await self._decode(self.returns, entry.key, entry.value)
        return result

    async def get_endtime(self, jid: str) -> str | bool:
        """Return the job's end time, or False when none is stored."""
        end_time = await self._read(self.jobs, _job_key(jid, "endtime"))
        return False if end_time is MISSING else end_time

    async def list_loads(self) -> dict[str, dict[str, Any]]:
        """Return the load of every job, keyed by jid."""
        return await self._read_all(self.jobs, "*.load")

    async def list_endtimes(self) -> dict[str, str]:
        """Return the end time of every job that has one, keyed by jid."""
        return await self._read_all(self.jobs, "*.endtime")

    async def get_minions(self) -> list[str]:
        """Return the sorted ids of every minion with a stored return."""
        entries = await self._scan(self.returns, "*.*", meta_only=True)
        return sorted({decode_key_token(entry.key.split(".")[1]) for entry in entries})

    async def get_fun(self, fun: str) -> dict[str, dict[str, Any]]:
        """Return, per minion, its return from the latest job that ran ``fun``.

        Each value contains the stored return keys plus ``jid``, ``fun`` and ``id``.
        "Latest" is the highest jid, which is the newest for Salt's time-based jids.
        """
        loads = await self.list_loads()
        matching = {jid for jid, load in loads.items() if _runs_function(load, fun)}

        latest: dict[str, str] = {}
        for entry in await self._scan(self.returns, "*.*", meta_only=True):
            jid_token, minion_token = entry.key.split(".")
            jid = decode_key_token(jid_token)
            minion_id = decode_key_token(minion_token)
            if jid in matching and jid > latest.get(minion_id, ""):
                latest[minion_id] = jid

        result = {}
        for minion_id, jid in latest.items():
            value = await self._read(self.returns, _return_key(jid, minion_id))
            if isinstance(value, dict):
                result[minion_id] = {"jid": jid, "fun": fun, "id": minion_id, **value}
        return result

    # -- expiry --

    async def clean_old_jobs(self, now: datetime.datetime | None = None) -> tuple[int, int]:
        """Remove jobs older than ``keep_jobs_seconds`` and the remains of expired jobs.

        A job's age counts from its marker's write time on the server. Keys of a
        job without a marker are remains of an expired job. Returns the number of
        expired jobs and of remains removed.
        """
        if self.keep_jobs_seconds <= 0:
            return 0, 0
        now = now or datetime.datetime.now(datetime.timezone.utc)
        cutoff = now - datetime.timedelta(seconds=self.keep_jobs_seconds)

        # Returns are listed before markers: a return is written after its job's
        # marker, so a job that is new during this scan still has its marker listed.
        return_jids = {
            entry.key.split(".")[0] for entry in await self._scan(self.returns, ">", meta_only=True)
        }
        job_entries = await self._scan(self.jobs, ">", meta_only=True)
        marker_times = {
            entry.key.split(".")[0]: entry.created
            for entry in job_entries
            if entry.key.endswith(".jid") and entry.key.count(".") == 1
        }
        job_jids = {entry.key.split(".")[0] for entry in job_entries}

        expired = {token for token, created in marker_times.items() if created and created < cutoff}
        remains = (return_jids | job_jids) - marker_times.keys()
        for token in sorted(expired | remains):
            await self._purge(self.settings.kv_jobs_bucket, f"{token}.>")
            await self._purge(self.settings.kv_returns_bucket, f"{token}.>")
        return len(expired), len(remains)

    # -- values --

    async def _write(self, kv: KeyValue, key: str, packed: bytes, last: int | None) -> None:
        """Write a value, in chunks if it is too large for one message.

        ``last`` is None to overwrite, 0 to create only, or the revision the key must
        still have. Raises KeyWrongLastSequenceError when that expectation fails.
        """
        version = None
        if len(packed) + 1 <= self.chunk_size:
            value = bytes([INLINE_VALUE]) + packed
        else:
            version = secrets.token_hex(4)
            chunks = [
                packed[start : start + self.chunk_size]
                for start in range(0, len(packed), self.chunk_size)
            ]
            for index, chunk in enumerate(chunks):
                await kv.put(f"{key}.{version}.{index}", chunk)
            manifest = {
                "version": version,
                "chunks": len(chunks),
                "size": len(packed),
                "sha256": hashlib.sha256(packed).hexdigest(),
            }
            value = bytes([CHUNKED_VALUE]) + codec.pack_data(manifest)

        try:
            if last is None:
                await kv.put(key, value)
            elif last == 0:
                await kv.create(key, value)
            else:
                await kv.update(key, value, last=last)
        except nats.js.errors.KeyWrongLastSequenceError:
            if version is not None:
                await self._purge(_bucket_of(kv), f"{key}.{version}.>")
            raise
        # NOTE: overwriting a chunked value leaves the old chunks in place until the
        # bucket's max age or clean_old_jobs removes them.

    async def _read(self, kv: KeyValue, key: str) -> Any:
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return MISSING
        return await self._decode(kv, key, entry.value)

    async def _decode(self, kv: KeyValue, key: str, value: bytes | None) -> Any:
        if not value:
            raise JobCacheError(f"key {key} of bucket {_bucket_of(kv)} has an empty value")
        try:
            if value[0] == INLINE_VALUE:
                return codec.unpack_data(value[1:])
            if value[0] == CHUNKED_VALUE:
                return codec.unpack_data(await self._read_chunks(kv, key, value[1:]))
        except codec.FrameError as exc:
            raise JobCacheError(
                f"key {key} of bucket {_bucket_of(kv)} has a value that is invalid msgpack: {exc}"
            ) from exc
        raise JobCacheError(
            f"key {key} of bucket {_bucket_of(kv)} has the unknown value format {value[0]}"
        )

    async def _read_chunks(self, kv: KeyValue, key: str, packed_manifest: bytes) -> bytes:
        manifest = codec.unpack_data(packed_manifest)
        version = manifest["version"]
        parts = []
        for index in range(manifest["chunks"]):
            try:
                entry = await kv.get(f"{key}.{version}.{index}")
            except nats.js.errors.KeyNotFoundError:
                raise JobCacheError(
                    f"key {key} of bucket {_bucket_of(kv)} is incomplete: chunk {index + 1} "
                    f"of {manifest['chunks']} is missing"
                ) from None
            parts.append(entry.value or b"")
        packed = b"".join(parts)
        if len(packed) != manifest["size"] or (
            hashlib.sha256(packed).hexdigest() != manifest["sha256"]
        ):
            raise JobCacheError(
                f"key {key} of bucket {_bucket_of(kv)}: the chunks do not match their manifest"
            )
        return packed

    async def _read_all(self, kv: KeyValue, pattern: str) -> dict[str, Any]:
        result = {}
        for entry in await self._scan(kv, pattern):
            jid = decode_key_token(entry.key.split(".")[0])
            result[jid] = await self._decode(kv, entry.key, entry.value)
        return result

    async def _scan(
        self, kv: KeyValue, pattern: str, meta_only: bool = False
    ) -> list[KeyValue.Entry]:
        """Return the latest entry of every key that matches ``pattern``.

        One ordered consumer delivers them all; ``meta_only`` leaves out the values.
        """
        watcher = await kv.watch(
            pattern,
            meta_only=meta_only,
            ignore_deletes=True,
            inactive_threshold=SCAN_INACTIVE_THRESHOLD,
        )
        entries = []
        try:
            async for entry in watcher:
                if entry is None:  # the watcher's end-of-initial-values marker
                    break
                entries.append(entry)
        finally:
            await watcher.stop()
        return entries

    async def _purge(self, bucket: str, key_filter: str) -> None:
        await self.js.purge_stream(_stream_name(bucket), subject=f"$KV.{bucket}.{key_filter}")


def _stream_name(bucket: str) -> str:
    return f"KV_{bucket}"


def _bucket_of(kv: KeyValue) -> str:
    return kv._name


def _nocache_of(marker: Any) -> bool:
    return isinstance(marker, dict) and bool(marker.get("nocache"))


def _runs_function(load: Any, fun: str) -> bool:
    if not isinstance(load, dict):
        return False
    job_fun = load.get("fun")
    if isinstance(job_fun, list):
        return fun in job_fun
    return job_fun == fun


# -- blocking calls for the loader module -------------------------------------------


@dataclass
class _JobFacts:
    nocache: bool = False
    load_saved: bool = False


class KnownJobs:
    """Recent jobs a :class:`JobCache` has seen, shared by its threads.

    NOTE: each process remembers on its own. A job that clean_old_jobs removed in
    another process may still be remembered here. A late return of that job is then
    stored without a marker, and the next clean_old_jobs removes it.
    """

    def __init__(self, size: int = KNOWN_JOBS) -> None:
        self._size = size
        self._jobs: OrderedDict[str, _JobFacts] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, jid: str) -> _JobFacts | None:
        """Return what is known of the job, or None."""
        with self._lock:
            return self._jobs.get(jid)

    def remember(self, jid: str, **facts: bool) -> None:
        """Record facts about the job, forgetting the least recent job beyond the size."""
        with self._lock:
            known = self._jobs.get(jid) or _JobFacts()
            for name, value in facts.items():
                setattr(known, name, value)
            self._jobs[jid] = known
            self._jobs.move_to_end(jid)
            while len(self._jobs) > self._size:
                self._jobs.popitem(last=False)


class JobCache:
    """The master job cache functions as blocking calls with a deadline.

    Functions that write log every failure with the jid and return. Functions that
    read raise :class:`JobCacheError`, because an empty result would tell Salt that
    the job does not exist. Invalid options are handled the same way. One instance
    may serve many calls and threads; it remembers recent jobs in :class:`KnownJobs`.
    """

    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        keep_jobs_seconds: float,
        node_id: str,
        salt_opts: Mapping[str, Any] | None = None,
    ):
        self.keep_jobs_seconds = float(keep_jobs_seconds)
        self.node_id = node_id
        self.known = KnownJobs()
        self.settings: ReturnerSettings | None = None
        self.config_error: ConfigError | None = None
        try:
            self.settings = load_settings(options, salt_opts)
        except ConfigError as exc:
            self.config_error = exc

    # -- writing --

    def prep_jid(self, jid: str, nocache: bool, generated: bool) -> bool:
        """Store the job marker; return False only when a generated jid is taken."""
        if not generated and self.known.get(jid) is not None:
            return True
        result = self._write("job marker", jid, "prep_jid", jid, nocache, generated)
        if result is None:
            return True  # logged; the job runs without a marker
        usable, job_nocache = result
        if usable:
            self.known.remember(jid, nocache=job_nocache)
        return usable

    def save_load(
        self, jid: str, load: Mapping[str, Any], minions: list[str] | None, keep_existing: bool
    ) -> None:
        """Store a job's load and, when given, its minion list."""
        facts = self.known.get(jid)
        if keep_existing and facts is not None and facts.load_saved:
            return
        if self._write("load", jid, "save_load", jid, load, minions, keep_existing) is not None:
            self.known.remember(jid, load_saved=True)

    def save_minions(self, jid: str, minions: Iterable[str]) -> None:
        """Merge minion ids into a job's minion list."""
        self._write("minion list", jid, "save_minions", jid, list(minions))

    def save_return(self, ret: Mapping[str, Any]) -> None:
        """Store one minion's return."""
        jid = ret.get("jid")
        facts = self.known.get(str(jid))
        nocache = facts.nocache if facts is not None else None
        result = self._write(f"return of minion {ret.get('id')}", jid, "save_return", ret, nocache)
        if result is not None and facts is None:
            self.known.remember(str(jid), nocache=result[1])

    def update_endtime(self, jid: str, end_time: str) -> None:
        """Store a job's end time."""
        self._write("end time", jid, "update_endtime", jid, end_time)

    def clean_old_jobs(self) -> None:
        """Remove expired jobs and their remains; failures are logged."""
        if self.config_error is not None:
            log.error("salt-nats job cache: old jobs not removed: %s", self.config_error)
            return
        try:
            expired, remains = self._run("clean_old_jobs", timeout=CLEAN_TIMEOUT)
        except Exception as exc:
            log.error("salt-nats job cache: removing old jobs failed: %s", describe_error(exc))
            return
        if expired or remains:
            log.info(
                "salt-nats job cache: removed %d jobs older than %s s and the remains of %d "
                "expired jobs",
                expired,
                self.keep_jobs_seconds,
                remains,
            )

    # -- reading --

    def get_load(self, jid: str) -> dict[str, Any]:
        """Return a job's load with ``Minions``, or ``{}``."""
        return self._read(f"the load of job {jid}", "get_load", jid)

    def get_jid(self, jid: str) -> dict[str, dict[str, Any]]:
        """Return every stored return of a job, keyed by minion id."""
        return self._read(f"the returns of job {jid}", "get_jid", jid)

    def get_endtime(self, jid: str) -> str | bool:
        """Return a job's end time, or False."""
        return self._read(f"the end time of job {jid}", "get_endtime", jid)

    def list_loads(self) -> dict[str, dict[str, Any]]:
        """Return every job's load, keyed by jid."""
        return self._read("the job list", "list_loads")

    def list_endtimes(self) -> dict[str, str]:
        """Return every stored end time, keyed by jid."""
        return self._read("the end times", "list_endtimes")

    def get_fun(self, fun: str) -> dict[str, dict[str, Any]]:
        """Return each minion's return from the latest job that ran ``fun``."""
        return self._read(f"the latest returns of {fun}", "get_fun", fun)

    def get_minions(self) -> list[str]:
        """Return the ids of the minions with stored returns."""
        return self._read("the minion list", "get_minions")

    # -- running --

    def _write(self, what: str, jid: Any, method: str, *args: Any) -> Any:
        if self.config_error is not None:
            log.error(
                "salt-nats job cache: %s of job %s not stored: %s", what, jid, self.config_error
            )
            return None
        try:
            return self._run(method, *args)
        except Exception as exc:
            log.error(
                "salt-nats job cache: %s of job %s not stored: %s", what, jid, describe_error(exc)
            )
            return None

    def _read(self, what: str, method: str, *args: Any) -> Any:
        if self.config_error is not None:
            raise JobCacheError(f"salt-nats job cache: cannot read {what}: {self.config_error}")
        try:
            return self._run(method, *args)
        except JobCacheError:
            raise
        except Exception as exc:
            raise JobCacheError(
                f"salt-nats job cache: reading {what} failed: {describe_error(exc)}"
            ) from exc

    def _run(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        timeout = timeout or self.settings.timeout
        return sync.get_loop().run(self._call, method, args, timeout, timeout=timeout)

    async def _call(self, method: str, args: tuple[Any, ...], timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        shared = shared_client_for(self.settings, self.node_id)
        client = await shared.wait_connected(deadline)
        store = await _open_store(client, self.settings, self.keep_jobs_seconds)
        remaining = max(deadline - loop.time(), 0.05)
        return await asyncio.wait_for(getattr(store, method)(*args), remaining)


async def _open_store(
    client: Client, settings: ReturnerSettings, keep_jobs_seconds: float
) -> JobStore:
    """Return the opened :class:`JobStore` of this client and settings, opening it once."""
    stores: dict[Any, asyncio.Task[JobStore]] = sync.get_loop().resources.setdefault(
        "job_stores", {}
    )
    for key in [key for key, task in stores.items() if key[0] is not client and task.done()]:
        del stores[key]  # a client that was replaced after it closed

    key = (
        client,
        settings.kv_jobs_bucket,
        settings.kv_returns_bucket,
        settings.kv_replicas,
        settings.kv_storage,
        settings.timeout,
        keep_jobs_seconds,
    )
    task = stores.get(key)
    if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
        task = asyncio.get_running_loop().create_task(
            _new_store(client, settings, keep_jobs_seconds)
        )
        stores[key] = task
    return await asyncio.shield(task)


async def _new_store(
    client: Client, settings: ReturnerSettings, keep_jobs_seconds: float
) -> JobStore:
    store = JobStore(client, settings, keep_jobs_seconds)
    await store.open()
    return store
