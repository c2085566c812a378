"""Problems that belong to a line of a local file, as the editor should show them.

Produced by builds, tests and the Docker image build; the language server turns them into
``textDocument/publishDiagnostics``, the terminal prints them as ``file:line: message``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

Severity = Literal["error", "warning", "information", "hint"]


class RelatedLocation(msgspec.Struct, frozen=True):
    path: Path
    line: int
    message: str


class Diagnostic(msgspec.Struct, frozen=True, kw_only=True):
    """Lines and columns are 1-based, as tools print them."""

    line: int
    message: str
    column: int = 1
    end_line: int | None = None
    end_column: int | None = None
    severity: Severity = "error"
    code: str | None = None
    related: tuple[RelatedLocation, ...] = ()


# Each producer publishes under its own source and replaces all of that source's diagnostics
# for a file at once; an empty list clears them.
DiagnosticSource = Literal["podlink-build", "podlink-test", "podlink-sync"]
