"""App output through `podlink up` beside the same app piped straight into a reader.

Run: ``.venv/bin/python -m bench.app_output [--megabytes 50] [--repeats 3]``

The app (the one tests/integration/test_cli_up_output.py uses) writes MEGABYTES of
100-byte lines between a ``begin`` and an ``end`` line. podlink: ``podlink up`` on the local
target with stdout a pipe, timed from the ``app | begin`` line to ``app | end`` as read by
this process. Peer: ``python3 -u app.py`` piped into this process, timed the same way. One
JSON line: medians in MB/s, the ratio, and the goal (podlink >= 20 MB/s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.test_cli_up_output import APP, MEGABYTES, workspace_with


def read_between(process: subprocess.Popen[bytes], begin: bytes, end: bytes) -> float:
    """Seconds from the line ending in ``begin`` to the one ending in ``end``."""
    assert process.stdout is not None
    began = None
    for raw in process.stdout:
        if raw.endswith(begin):
            began = time.perf_counter()
        elif raw.endswith(end) and began is not None:
            return time.perf_counter() - began
    raise RuntimeError("the output ended before the app's last line")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    podlink: list[float] = []
    direct: list[float] = []
    with tempfile.TemporaryDirectory(prefix="podlink-bench-") as scratch:
        env = {**os.environ, "PODLINK_STATE_DIR": str(Path(scratch) / "state")}
        folder = workspace_with(Path(scratch) / "loud", APP)
        for _ in range(args.repeats):
            up = subprocess.Popen(
                [sys.executable, "-m", "podlink", "up", str(folder)],
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            try:
                podlink.append(MEGABYTES / read_between(up, b"app | begin\n", b"app | end\n"))
            finally:
                stop(up)
            plain = subprocess.Popen(
                ["python3", "-u", "app.py"], cwd=folder, stdout=subprocess.PIPE
            )
            try:
                direct.append(MEGABYTES / read_between(plain, b"begin\n", b"end\n"))
            finally:
                plain.kill()
                plain.wait()
    mine, peer = statistics.median(podlink), statistics.median(direct)
    print(
        json.dumps(
            {
                "bench": "app_output",
                "megabytes": MEGABYTES,
                "podlink_mb_s": round(mine, 1),
                "direct_pipe_mb_s": round(peer, 1),
                "ratio_podlink_to_direct": round(mine / peer, 2),
                "target": "podlink >= 20 MB/s",
                "met": mine >= 20,
                "runs": {
                    "podlink": [round(v, 1) for v in podlink],
                    "direct": [round(v, 1) for v in direct],
                },
            }
        )
    )


if __name__ == "__main__":
    main()
