"""Print the Salt events that salt-nats publishes, decoded with salt-nats' own helpers.

Usage: python subscriber.py [URL] [SUBJECT] [COUNT]

URL defaults to $NATS_URL, else nats://127.0.0.1:4222. SUBJECT defaults to
salt.events.> and must be under the engine's subject prefix, salt.events. The script
stops after COUNT events, or on Ctrl-C.
"""

import asyncio
import contextlib
import json
import os
import sys

import nats

from salt_nats.codec import HEADER_CONTENT_TYPE, decode_payload
from salt_nats.subjects import tag_from_message


async def main(url: str, subject: str, count: int) -> None:
    client = await nats.connect(url)
    enough = asyncio.Event()
    received = 0

    async def handle(msg):
        nonlocal received
        headers = msg.headers or {}
        try:
            tag = tag_from_message(msg.subject, headers)
            _, data = decode_payload(msg.data, headers.get(HEADER_CONTENT_TYPE))
        except ValueError as error:
            print(f"skipped a message on {msg.subject}: {error}", file=sys.stderr)
            return

        # decode_payload restores bytes and datetimes, which json shows with str().
        print(f"{tag}\t{json.dumps(data, default=str)}", flush=True)
        received += 1
        if count and received >= count:
            enough.set()

    await client.subscribe(subject, cb=handle)
    await client.flush()
    print(f"Listening on {subject}", file=sys.stderr, flush=True)
    try:
        await enough.wait()
    finally:
        await client.drain()


if __name__ == "__main__":
    arguments = sys.argv[1:]
    server = arguments[0] if arguments else os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    subscription = arguments[1] if len(arguments) > 1 else "salt.events.>"
    limit = int(arguments[2]) if len(arguments) > 2 else 0
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(server, subscription, limit))
