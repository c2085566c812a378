"""Docker target: debugging as VS Code does it through podlink's own debug adapter.

Run (after ``scripts/docker-env``, which starts the engine and builds the test image):

    .venv/bin/python -m bench.debug_editor [--repeats N]

Default: 5 repeats. One throwaway container from podlink-test-python:bookworm (label
``podlink.bench=1``) runs the example app; it is removed at the end, also after a failure or
Ctrl-C. One JSON object per line is printed.

The client is the path the editor takes: the extension's ``podlink`` debug type resolves its
configuration with ``podlink/startDebug`` (here ``Session.start_debug()``), and its
``DebugAdapterServer`` makes VS Code open a TCP connection to the forwarded port and speak
DAP to debugpy there. So the bench connects, sends ``initialize`` (adapter ``podlink``),
``attach`` with the resolved configuration, ``setBreakpoints`` with the local path of
``greet`` and ``configurationDone``, exactly what VS Code sends, then one request through the
app's forward (retried while the app starts).

1. ``editor_debug_start_to_breakpoint_docker``: from ``startDebug`` to the ``stopped`` event
   with reason ``breakpoint``, on a fresh session each repeat (so the app restarts under
   debugpy every time, as when a person starts debugging). The first repeat also copies
   debugpy into the container and is reported alone as ``cold_s``; the median is over the
   others. Goal: median <= 1.0 s.
2. ``editor_save_to_breakpoint_again_docker``: attached and running, a change to
   ``greeting.py`` is saved; the clock runs from the write until the editor is stopped at the
   same breakpoint again: the sync, the app's restart under debugpy, the old DAP connection
   closing, the extension's re-attach once the app runs (``startDebug`` again, which does not
   restart the app once more) and the request hitting the breakpoint. Goal: median <= 1.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.dap import DapClient

from bench.ports_debug import (
    LogListener,
    bench_container,
    emit,
    get_greeting,
    make_workspace,
)
from podlink import protocol
from podlink.config import load_config
from podlink.session import Session

BREAKPOINT_NEEDLE = "cleaned = name.strip()"
START_GOAL_S = 1.0
SAVE_GOAL_S = 1.5


class AppWatcher(LogListener):
    """The session's log, and each state its app goes through."""

    def __init__(self) -> None:
        super().__init__()
        self.app_states: list[str] = []

    def session_changed(self, session: protocol.Session) -> None:
        if session.app is not None and (
            not self.app_states or self.app_states[-1] != session.app.state
        ):
            self.app_states.append(session.app.state)
            self.arrived.set()

    async def restarted(self, since: int, seconds: float = 30) -> None:
        """The app left "running" after ``since`` (an index into app_states) and runs again."""
        async with asyncio.timeout(seconds):
            while True:
                later = self.app_states[since:]
                if any(state != "running" for state in later) and later[-1] == "running":
                    return
                self.arrived.clear()
                await self.arrived.wait()


def breakpoint_line(source: Path) -> int:
    lines = source.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if BREAKPOINT_NEEDLE in line)


async def attach_as_the_editor(configuration: dict[str, Any], source: Path) -> DapClient:
    """What VS Code sends to a DebugAdapterServer for the resolved podlink configuration."""
    client = await DapClient.connect(
        configuration["connect"]["host"], configuration["connect"]["port"]
    )
    try:
        await client.request(
            "initialize",
            {"clientID": "vscode", "adapterID": "podlink", "pathFormat": "path"},
        )
        attached = client.send_request("attach", {**configuration, "type": "podlink"})
        await client.wait_event("initialized")
        placed = await client.request(
            "setBreakpoints",
            {"source": {"path": str(source)}, "breakpoints": [{"line": breakpoint_line(source)}]},
        )
        assert placed["breakpoints"][0]["verified"], placed
        await client.request("configurationDone")
        await attached
    except BaseException:
        await client.close()
        raise
    return client


async def stop_at_breakpoint(client: DapClient, app_port: int) -> tuple[int, asyncio.Future[bytes]]:
    """Send a request that reaches greet(); (the stopped thread, the pending reply)."""
    since = len(client.events)
    reply = asyncio.ensure_future(get_greeting(app_port))
    stopped = await client.wait_event("stopped", seconds=30, since=since)
    assert stopped["reason"] == "breakpoint", stopped
    return stopped["threadId"], reply


async def one_repeat(scratch: Path, container: str, index: int) -> tuple[float, float]:
    """A fresh session: (start debugging -> stopped, save -> stopped again), in seconds."""
    workspace = make_workspace(scratch / f"repeat-{index}", container)
    source = workspace / "app" / "greeting.py"
    watcher = AppWatcher()
    session = Session(load_config(workspace), watcher)
    await session.start()
    try:
        app_port = session.to_protocol().ports[0].local_port
        await watcher.wait_for("app", "listening on", 0)

        started = time.perf_counter()
        configuration = await session.start_debug()
        client = await attach_as_the_editor(configuration, source)
        thread, reply = await stop_at_breakpoint(client, app_port)
        to_first_stop = time.perf_counter() - started
        await client.request("continue", {"threadId": thread})
        assert b"Hello, Ada!" in await asyncio.wait_for(reply, 30)

        states_before = len(watcher.app_states)
        saved = time.perf_counter()
        source.write_text(source.read_text().replace("Hello", f"Howdy {index}"))
        await client.wait_closed()
        await client.close()
        await watcher.restarted(states_before)
        configuration = await session.start_debug()
        client = await attach_as_the_editor(configuration, source)
        try:
            thread, reply = await stop_at_breakpoint(client, app_port)
            to_second_stop = time.perf_counter() - saved
            await client.request("continue", {"threadId": thread})
            assert f"Howdy {index}, Ada!".encode() in await asyncio.wait_for(reply, 30)
            await client.request("disconnect", {})
        finally:
            await client.close()
        return to_first_stop, to_second_stop
    finally:
        await session.stop()


async def run(args: argparse.Namespace) -> None:
    async with bench_container() as container:
        with tempfile.TemporaryDirectory() as scratch:
            results = [
                await one_repeat(Path(scratch), container.name, index)
                for index in range(args.repeats)
            ]
    starts = [start for start, _ in results]
    saves = [save for _, save in results]
    warm_starts = starts[1:] or starts
    start_median = statistics.median(warm_starts)
    emit(
        {
            "figure": "editor_debug_start_to_breakpoint_docker",
            "median_s": round(start_median, 3),
            "cold_s": round(starts[0], 3),
            "runs": [round(value, 3) for value in starts],
            "goal_s": START_GOAL_S,
            "met": start_median <= START_GOAL_S,
        }
    )
    save_median = statistics.median(saves)
    emit(
        {
            "figure": "editor_save_to_breakpoint_again_docker",
            "median_s": round(save_median, 3),
            "runs": [round(value, 3) for value in saves],
            "goal_s": SAVE_GOAL_S,
            "met": save_median <= SAVE_GOAL_S,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2: the first repeat is the cold one")
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
