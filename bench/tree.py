"""A deterministic source-like tree for benchmarks: same seed, same bytes, every run."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = tuple(
    "def class return import from self value result items config session target sync path "
    "for in if else elif while try except finally with as yield async await lambda None True "
    "False print len range dict list set tuple str int float bytes open read write close".split()
)


def source_text(rng: random.Random, size: int) -> bytes:
    lines: list[str] = []
    total = 0
    while total < size:
        indent = "    " * rng.randint(0, 3)
        line = indent + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode()[:size]


def make_tree(
    root: Path, files: int = 10_000, folders: int = 200, total_bytes: int = 100 << 20, seed: int = 7
) -> tuple[int, int]:
    """Write the tree under ``root``; returns (files, bytes)."""
    rng = random.Random(seed)
    mean = total_bytes // files
    written = 0
    folder_paths = [root / f"pkg{i // 20:02d}" / f"mod{i:03d}" for i in range(folders)]
    for folder in folder_paths:
        folder.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        size = max(64, int(rng.expovariate(1 / mean)))
        path = folder_paths[index % folders] / f"file_{index:05d}.py"
        data = source_text(rng, size)
        path.write_bytes(data)
        written += len(data)
    return files, written
