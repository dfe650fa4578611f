"""JetStream stream set-up for ``mode: jetstream``: create, update or check the stream."""

from __future__ import annotations

import logging
from typing import Any

from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from salt_nats import subjects
from salt_nats.config import EngineSettings

log = logging.getLogger(__name__)


class StreamSetupError(RuntimeError):
    """The stream is missing or does not capture the engine's subjects."""


def desired_stream_config(settings: EngineSettings) -> StreamConfig:
    """Return the stream config the ``stream_*`` options describe."""
    return StreamConfig(
        name=settings.stream,
        subjects=list(settings.effective_stream_subjects),
        retention=RetentionPolicy(settings.stream_retention),
        storage=StorageType(settings.stream_storage),
        num_replicas=settings.stream_replicas,
        max_age=settings.stream_max_age,
        max_bytes=settings.stream_max_bytes,
        duplicate_window=settings.stream_duplicate_window,
    )


def _differences(current: StreamConfig, desired: StreamConfig) -> list[str]:
    names = (
        "subjects",
        "retention",
        "storage",
        "num_replicas",
        "max_age",
        "max_bytes",
        "duplicate_window",
    )
    changed = []
    for name in names:
        have: Any = getattr(current, name)
        want: Any = getattr(desired, name)
        if name == "subjects":
            have, want = sorted(have or []), sorted(want or [])
        elif isinstance(want, float):
            have = float(have or 0)
        if have != want:
            changed.append(f"{name}: {have!r} -> {want!r}")
    return changed


def _captures(stream_subjects: list[str], subject: str) -> bool:
    return any(subjects.subject_matches(pattern, subject) for pattern in stream_subjects)


async def ensure_stream(js: JetStreamContext, settings: EngineSettings) -> None:
    """Create, update or check the stream, as ``stream_create`` selects.

    Raises :class:`StreamSetupError` when the stream cannot receive the events; a
    config difference that the server refuses to update is logged, not raised,
    because the existing stream still stores the events.
    """
    desired = desired_stream_config(settings)
    name = settings.stream
    probe_subject = f"{settings.subject_prefix}.probe"

    try:
        info = await js.stream_info(name)
    except NotFoundError:
        if not settings.stream_create:
            raise StreamSetupError(
                f"stream {name!r} does not exist; create it or set stream_create: true"
            ) from None
        await js.add_stream(desired)
        log.info(
            "salt-nats %s: created JetStream stream %s for subjects %s",
            settings.name,
            name,
            ", ".join(desired.subjects or []),
        )
        return

    current = info.config
    captured = _captures(list(current.subjects or []), probe_subject)
    if not captured and not settings.stream_create:
        raise StreamSetupError(
            f"stream {name!r} captures {current.subjects}, not {settings.subject_prefix}.>; "
            "add the subject to the stream or set stream_create: true"
        )
    changes = _differences(current, desired)
    if not changes:
        log.info("salt-nats %s: using JetStream stream %s", settings.name, name)
        return
    if not settings.stream_create:
        log.warning(
            "salt-nats %s: stream %s differs from the configured stream_* options (%s); "
            "left as it is because stream_create is false",
            settings.name,
            name,
            "; ".join(changes),
        )
        return
    try:
        await js.update_stream(desired)
    except APIError as exc:
        log.error(
            "salt-nats %s: stream %s differs from the configured stream_* options (%s) and the "
            "server refused the update: %s. Events still go to the existing stream; change it "
            "with the nats CLI or align the options.",
            settings.name,
            name,
            "; ".join(changes),
            exc,
        )
        if not captured:
            raise StreamSetupError(
                f"stream {name!r} does not capture {settings.subject_prefix}.>"
            ) from exc
        return
    log.info(
        "salt-nats %s: updated JetStream stream %s (%s)", settings.name, name, "; ".join(changes)
    )
