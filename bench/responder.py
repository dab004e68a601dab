"""The raw nats-py floor: a separate process that answers each request with its payload.

``python -m bench.responder URL SUBJECT [CREDS]`` subscribes (in a queue group, as a mote's
instances do), flushes, prints ``ready`` and replies until SIGTERM. It runs on uvloop when
installed, as Motes workers do, so the floor and the mote differ only in Motes' own code.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import nats


async def serve(url: str, subject: str, creds: str) -> None:
    auth = {"user_credentials": creds} if creds else {}
    nc = await nats.connect(url, name="bench responder", **auth)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def reply(msg: nats.aio.msg.Msg) -> None:
        await nc.publish(msg.reply, msg.data)

    await nc.subscribe(subject, queue="bench", cb=reply, pending_msgs_limit=1_000_000)
    await nc.flush()
    print("ready", flush=True)
    await stop.wait()
    await nc.drain()


def main() -> None:
    url, subject, creds = [*sys.argv[1:4], ""][:3]
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(url, subject, creds))
    else:
        uvloop.run(serve(url, subject, creds))


if __name__ == "__main__":
    main()
