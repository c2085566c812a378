"""The names podlink gives files of its own, which no scan, watch or sync ever carries over.

The agent (``agent/agent.py``) keeps its own copy of ``TEMP_PREFIX`` because it must stay
one stdlib file; a test keeps the two equal.
"""

from __future__ import annotations

# Temporary files written before being renamed over their destination, in either side.
TEMP_PREFIX = ".podlink-tmp-"
# The target's version of a conflicting path, saved in the workspace beside it.
CONFLICT_MARKER = ".podlink-conflict-"


def conflict_copy_name(path: str, stamp: str) -> str:
    return f"{path}{CONFLICT_MARKER}{stamp}"
