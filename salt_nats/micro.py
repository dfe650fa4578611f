"""The engine's NATS micro service: discovery and a ``status`` endpoint over NATS.

Each engine instance adds one instance of the service ``salt-nats``, so the
``nats micro ls``, ``info`` and ``stats`` commands list every master's bridges.
The ``status`` endpoint of an instance listens on
``salt-nats.status.<master token>.<instance name>`` (the master id encoded as a
subject token) and returns the same report as
``salt-run nats.status``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from salt_nats import __version__
from salt_nats.subjects import encode_token

log = logging.getLogger(__name__)

SERVICE_NAME = "salt-nats"
STATUS_SUBJECT_PREFIX = "salt-nats.status"


def status_subject(master_id: str, instance: str) -> str:
    """Return the subject of one instance's ``status`` endpoint."""
    return f"{STATUS_SUBJECT_PREFIX}.{encode_token(master_id)}.{encode_token(instance)}"


async def start_micro_service(
    client: Client, master_id: str, instance: str, report: Callable[[], dict[str, Any]]
) -> Service:
    """Add the service instance and its ``status`` endpoint on ``client``."""
    service = await add_service(
        client,
        name=SERVICE_NAME,
        version=__version__,
        description="Salt master event bus bridge",
        metadata={"master": master_id, "instance": instance},
    )

    async def handle_status(request: Request) -> None:
        await request.respond(json.dumps(report(), default=str).encode())

    await service.add_endpoint(
        name="status",
        subject=status_subject(master_id, instance),
        handler=handle_status,
        metadata={"format": "application/json"},
    )
    log.info(
        "salt-nats %s: NATS micro service %s is listening on %s",
        instance,
        SERVICE_NAME,
        status_subject(master_id, instance),
    )
    return service
