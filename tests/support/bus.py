"""Fire events onto a running salt-master's bus from the test process.

This uses Salt's own event client, as a master-side script or runner would.
It is much faster than one ``salt-run event.send`` process per event.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import salt.utils.event


def fire_events(
    master_config: Mapping[str, Any],
    tag_prefix: str,
    count: int,
    *,
    rate: float = 0.0,
    start: int = 0,
    payload: Mapping[str, Any] | None = None,
) -> list[str]:
    """Fire ``count`` events tagged ``<tag_prefix>/<n>`` and return their tags.

    ``rate`` is in events per second; 0 fires as fast as the bus takes them. Each
    event's data holds its number ``n`` and the fire time, plus ``payload``.
    """
    if count > 1_000_000:
        raise ValueError("count is limited to 1,000,000 events")
    tags = []
    interval = 1.0 / rate if rate > 0 else 0.0
    next_at = time.monotonic()
    with salt.utils.event.get_master_event(
        dict(master_config), master_config["sock_dir"], listen=False
    ) as bus:
        for n in range(start, start + count):
            tag = f"{tag_prefix}/{n}"
            data = {"n": n, "fired_at": time.time(), **(payload or {})}
            if not bus.fire_event(data, tag):
                raise RuntimeError(f"the master bus did not take event {tag}")
            tags.append(tag)
            if interval:
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    return tags
