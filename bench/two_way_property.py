"""The two-way property test's larger tier: many more random examples than CI runs.

    .venv/bin/python -m bench.two_way_property [--examples N] [--target local|docker|both]

Runs ``tests/integration/test_two_way_property.py`` with ``PODLINK_PROPERTY_EXAMPLES=N``
(default 500), drawn at random (CI's run is the same every time), and prints one JSON line
per target: examples, seconds, and whether every example held (convergence, no lost write,
ignored files untouched).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TEST = Path(__file__).resolve().parent.parent / "tests/integration/test_two_way_property.py"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--target", choices=["local", "docker", "both"], default="both")
    args = parser.parse_args()
    kinds = ["local", "docker"] if args.target == "both" else [args.target]
    for kind in kinds:
        env = {
            **os.environ,
            "PODLINK_PROPERTY_EXAMPLES": str(args.examples),
            "PODLINK_PROPERTY_RANDOM": "1",
        }
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TEST), "-k", kind,
             "-o", "timeout=0"],
            env=env,
            capture_output=True,
            text=True,
        )  # fmt: skip
        print(
            json.dumps(
                {
                    "bench": "two_way_property",
                    "target": kind,
                    "examples": args.examples,
                    "seconds": round(time.monotonic() - started, 1),
                    "held": run.returncode == 0,
                    "summary": run.stdout.strip().splitlines()[-1] if run.stdout else "",
                }
            ),
            flush=True,
        )
        if run.returncode != 0:
            sys.stdout.write(run.stdout[-6000:])


if __name__ == "__main__":
    main()
