"""A TCP relay that holds every byte for a fixed one-way delay in each direction.

Run inside the far link's network namespace (``bench.far_link`` starts it):

    python -m bench.delay_relay --listen 10.251.0.2:2375 --unix /var/run/docker.sock \
        --one-way-ms 25

This kernel has no ``sch_netem``, so propagation delay cannot be a qdisc; the rate limit
stays in the kernel (``tbf`` on both ends of the veth pair) and the delay is added here,
per chunk, in order, without limiting throughput: a chunk read at ``t`` is written at
``t + delay``, so a bulk stream keeps the link full and only its first byte waits. A new
connection's first chunk from the client also waits one extra round trip, standing in for
the TCP handshake the relay answers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time


async def _carry(
    source: asyncio.StreamReader,
    sink: asyncio.StreamWriter,
    delay: float,
    first_not_before: float = 0.0,
) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                with contextlib.suppress(OSError):
                    sink.write_eof()
                return
            sink.write(chunk)
            await sink.drain()

    writer = asyncio.create_task(deliver())
    first = True
    try:
        while True:
            chunk = await source.read(65536)
            due = time.monotonic() + delay
            if first:
                due = max(due, first_not_before + delay)
                first = False
            queue.put_nowait((due, chunk))
            if not chunk:
                break
        await writer
    except (ConnectionError, OSError):
        writer.cancel()


def _handler(unix_path: str, delay: float):  # type: ignore[no-untyped-def]
    async def handle(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        accepted = time.monotonic()
        try:
            engine_reader, engine_writer = await asyncio.open_unix_connection(unix_path)
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(
                _carry(client_reader, engine_writer, delay, first_not_before=accepted + 2 * delay),
                _carry(engine_reader, client_writer, delay),
            )
        finally:
            for writer in (engine_writer, client_writer):
                writer.close()

    return handle


async def serve(listen: str, unix_path: str, one_way_ms: float) -> None:
    host, port = listen.rsplit(":", 1)
    server = await asyncio.start_server(_handler(unix_path, one_way_ms / 1000), host, int(port))
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT in this namespace")
    parser.add_argument("--unix", required=True, help="the Unix socket to relay to")
    parser.add_argument("--one-way-ms", type=float, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.unix, args.one_way_ms))


if __name__ == "__main__":
    main()
