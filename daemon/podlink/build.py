"""Builds in the target: run ``build.command`` after a flush, turn its output into diagnostics.

The output is read as a few known formats (``parse_build_output``, pure): Python tracebacks
and the syntax errors ``py_compile`` and ``compileall`` print, ruff and flake8 (and other
``file:line:col: CODE message`` linters), ruff's newer ``-->`` format, mypy, pyright's text
output, gcc and clang; then any other ``file:line[:col]: message`` line. Each problem names
paths as the tool printed them (target paths, maybe relative to the working folder); they
become ``podlink-build`` diagnostics on local files through the sync mapping. Everything the
build prints goes to the session's ``build`` log as well, so output no format knows is never
lost.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from podlink.command_host import CommandHost, connected
from podlink.command_run import plan_command, read_lines
from podlink.diagnostics import Diagnostic, Severity
from podlink.errors import InvalidParams
from podlink.pathmap import Frame, PathMap
from podlink.targets.base import ExecStream


class NoBuildCommand(InvalidParams):
    """The configuration has no ``build:`` section."""


@dataclass(frozen=True)
class BuildProblem:
    """One problem a tool printed. ``frames`` are the places it names, innermost last: one for
    most tools, a whole stack for a Python traceback."""

    frames: tuple[Frame, ...]
    message: str
    column: int | None = None
    severity: Severity = "error"
    code: str | None = None


# -- parsing (pure) ------------------------------------------------------------------------

_FILE_LINE = r"(?P<path>[^\s:][^:]*?):(?P<line>\d+)"

_TRACEBACK_START = "Traceback (most recent call last):"
_TRACEBACK_FRAME = re.compile(
    r'^\s+File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in (?P<name>.+))?$'
)
# Between two tracebacks of one chain: the earlier one only explains the later one.
_CHAIN_SEPARATORS = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
# Old py_compile: "Sorry: IndentationError: unexpected indent (bad.py, line 3)".
_SORRY = re.compile(r"^Sorry: (?P<message>\w+: .*) \((?P<path>.+), line (?P<line>\d+)\)$")
# gcc, clang and mypy: "file:line[:col]: severity: message [code]".
_COMPILER = re.compile(
    rf"^{_FILE_LINE}(?::(?P<column>\d+))?: (?P<severity>fatal error|error|warning|note): "
    r"(?P<message>.*)$"
)
# ruff (concise), flake8, pycodestyle, pylint: "file:line:col: CODE message".
_LINTER = re.compile(
    rf"^{_FILE_LINE}:(?P<column>\d+): (?P<code>[A-Z]+[0-9]+|[a-z]+(?:-[a-z]+)+):? "
    r"(?:\[\*\] )?(?P<message>.*)$"
)
# ruff's full format: "CODE [*] message" (or "error[code]: message") then " --> file:line:col".
_ARROW_HEADER = re.compile(
    r"^(?P<code>[A-Z]+[0-9]+|[a-z]+(?:-[a-z]+)+|error|warning)(?:\[(?P<subcode>[^\]]+)\])?:? "
    r"(?:\[\*\] )?(?P<message>.+)$"
)
_ARROW_LOCATION = re.compile(rf"^\s*--> {_FILE_LINE}(?::(?P<column>\d+))?$")
# pyright: "  /app/x.py:3:5 - error: message (rule)", message lines may follow, indented.
_PYRIGHT = re.compile(
    rf"^(?P<indent>\s*){_FILE_LINE}:(?P<column>\d+) - (?P<severity>error|warning|information): "
    r"(?P<message>.*)$"
)
# Anything else shaped "file.ext:line[:col]: message" (the extension keeps prose out).
_GENERIC = re.compile(
    r"^(?P<path>[^\s:][^:]*\.[A-Za-z0-9_]+):(?P<line>\d+):(?:(?P<column>\d+):)? "
    r"(?P<message>.+)$"
)
_TRAILING_CODE = re.compile(r"^(?P<message>.*?)\s+\[(?P<code>[^\]\s]+)\]$")
_PYRIGHT_RULE = re.compile(r"^(?P<message>.*?)\s+\((?P<code>report\w+)\)$", re.DOTALL)

_SEVERITIES: dict[str, Severity] = {
    "fatal error": "error",
    "error": "error",
    "warning": "warning",
    "note": "information",
    "information": "information",
}


@dataclass
class _Lines:
    """The output with a cursor: each parser looks at the current line and may take more."""

    lines: Sequence[str]
    at: int = 0
    problems: list[BuildProblem] = field(default_factory=list)
    # Whether the last problem came from a traceback (a chain separator drops it).
    last_was_traceback: bool = False

    def peek(self, ahead: int = 0) -> str | None:
        index = self.at + ahead
        return self.lines[index] if index < len(self.lines) else None


def parse_build_output(text: str) -> list[BuildProblem]:
    """The problems in a tool's output, in the order printed."""
    state = _Lines(text.splitlines())
    while (line := state.peek()) is not None:
        if line.strip() in _CHAIN_SEPARATORS and state.last_was_traceback:
            state.problems.pop()
            state.last_was_traceback = False
            state.at += 1
            continue
        for parser in _PARSERS:
            if parser(state, line):
                break
        else:
            state.at += 1
    return state.problems


def _add(state: _Lines, problem: BuildProblem, consumed: int, *, traceback: bool = False) -> bool:
    state.problems.append(problem)
    state.last_was_traceback = traceback
    state.at += consumed
    return True


def _traceback(state: _Lines, line: str) -> bool:
    """A traceback, or the bare ``File ..., line N`` block of a syntax error."""
    starts_with_header = line.strip() == _TRACEBACK_START
    if not starts_with_header and not _TRACEBACK_FRAME.match(line):
        return False
    frames: list[Frame] = []
    offset = 1 if starts_with_header else 0
    while (current := state.peek(offset)) is not None:
        frame = _TRACEBACK_FRAME.match(current)
        if frame:
            frames.append(Frame(frame["path"], int(frame["line"]), frame["name"] or ""))
        elif current and not current[0].isspace():
            break  # the exception line
        offset += 1
    if not frames or current is None or not current.strip():
        return False
    return _add(state, BuildProblem(tuple(frames), current.strip()), offset + 1, traceback=True)


def _sorry(state: _Lines, line: str) -> bool:
    found = _SORRY.match(line)
    if not found:
        return False
    frame = Frame(found["path"], int(found["line"]))
    return _add(state, BuildProblem((frame,), found["message"]), 1)


def _compiler(state: _Lines, line: str) -> bool:
    found = _COMPILER.match(line)
    if not found:
        return False
    message, code = _split_code(found["message"], _TRAILING_CODE)
    problem = BuildProblem(
        (Frame(found["path"], int(found["line"])),),
        message,
        column=_int(found["column"]),
        severity=_SEVERITIES[found["severity"]],
        code=code,
    )
    return _add(state, problem, 1)


def _linter(state: _Lines, line: str) -> bool:
    found = _LINTER.match(line)
    if not found:
        return False
    code = found["code"]
    problem = BuildProblem(
        (Frame(found["path"], int(found["line"])),),
        found["message"],
        column=_int(found["column"]),
        severity="warning" if code.startswith("W") else "error",
        code=code,
    )
    return _add(state, problem, 1)


def _arrow(state: _Lines, line: str) -> bool:
    header = _ARROW_HEADER.match(line)
    following = state.peek(1)
    location = _ARROW_LOCATION.match(following) if header and following is not None else None
    if header is None or location is None:
        return False
    head = header["code"]
    is_severity = head in ("error", "warning")
    problem = BuildProblem(
        (Frame(location["path"], int(location["line"])),),
        header["message"],
        column=_int(location["column"]),
        severity="warning" if head == "warning" else "error",
        code=header["subcode"] if is_severity else head,
    )
    return _add(state, problem, 2)


def _pyright(state: _Lines, line: str) -> bool:
    found = _PYRIGHT.match(line)
    if not found:
        return False
    indent = len(found["indent"])
    message_lines = [found["message"]]
    consumed = 1
    while (more := state.peek(consumed)) is not None:
        depth = len(more) - len(more.lstrip())
        if not more.strip() or depth <= indent or _PYRIGHT.match(more):
            break
        message_lines.append(more.strip())
        consumed += 1
    message, code = _split_code("\n".join(message_lines), _PYRIGHT_RULE)
    problem = BuildProblem(
        (Frame(found["path"], int(found["line"])),),
        message,
        column=_int(found["column"]),
        severity=_SEVERITIES[found["severity"]],
        code=code,
    )
    return _add(state, problem, consumed)


def _generic(state: _Lines, line: str) -> bool:
    found = _GENERIC.match(line)
    if not found:
        return False
    frame = Frame(found["path"], int(found["line"]))
    return _add(state, BuildProblem((frame,), found["message"], column=_int(found["column"])), 1)


_PARSERS: tuple[Callable[[_Lines, str], bool], ...] = (
    _traceback,
    _sorry,
    _pyright,
    _compiler,
    _linter,
    _arrow,
    _generic,
)


def _split_code(message: str, pattern: re.Pattern[str]) -> tuple[str, str | None]:
    found = pattern.match(message)
    if found is None:
        return message, None
    return found["message"], found["code"]


def _int(text: str | None) -> int | None:
    return int(text) if text else None


def to_diagnostics(
    problems: Sequence[BuildProblem], paths: PathMap, cwd: str
) -> dict[Path, list[Diagnostic]]:
    """The problems that lie in synced files, as diagnostics per local file."""
    found: dict[Path, list[Diagnostic]] = {}
    for problem in problems:
        placed = paths.place_frames(problem.frames, cwd=cwd)
        if placed is None:
            continue  # outside the workspace: it stays in the log as text
        is_innermost = placed.frame_index == len(problem.frames) - 1
        diagnostic = Diagnostic(
            line=placed.line,
            column=(problem.column or 1) if is_innermost else 1,
            message=problem.message,
            severity=problem.severity,
            code=problem.code,
            related=placed.related,
        )
        found.setdefault(placed.path, []).append(diagnostic)
    return found


# -- running (I/O) -------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildOutcome:
    exit_code: int
    duration_ms: float
    diagnostics: dict[Path, list[Diagnostic]]

    @property
    def diagnostic_count(self) -> int:
        return sum(len(items) for items in self.diagnostics.values())

    def each(self) -> Iterator[tuple[Path, Diagnostic]]:
        for path in sorted(self.diagnostics):
            for diagnostic in self.diagnostics[path]:
                yield path, diagnostic


class BuildRunner:
    """A session's builds, one at a time; each replaces the previous build's diagnostics."""

    def __init__(self, host: CommandHost) -> None:
        self._host = host
        self._lock = asyncio.Lock()
        self._published: set[Path] = set()
        self._running: ExecStream | None = None

    async def run(self) -> BuildOutcome:
        """Flush, run ``build.command`` in the target, publish what its output says."""
        section = self._host.config.build
        if section is None or not section.command:
            raise NoBuildCommand(
                "this workspace has no build command: add a `command:` to the `build:` "
                "section of podlink.yaml"
            )
        async with self._lock:
            started = time.monotonic()
            await self._host.flush()
            link = connected(self._host)
            plan = plan_command(section, self._host.config, link.target)
            self._host.log("build", f"$ {plan.display}")
            execution = await link.target.exec(plan.argv, env=plan.env, cwd=plan.cwd)
            self._running = execution
            exit_code: int | None = None
            try:
                streams = [execution.stdout]
                if execution.stderr is not None:
                    streams.append(execution.stderr)
                outputs = await asyncio.gather(*(self._collect(stream) for stream in streams))
                exit_code = await execution.wait()
            finally:
                self._running = None
                if exit_code is None:
                    await asyncio.shield(execution.terminate())
            diagnostics: dict[Path, list[Diagnostic]] = {}
            for lines in outputs:
                found = to_diagnostics(parse_build_output("\n".join(lines)), link.paths, plan.cwd)
                for path, items in found.items():
                    diagnostics.setdefault(path, []).extend(items)
            self._publish(diagnostics)
            duration_ms = (time.monotonic() - started) * 1000
            outcome = BuildOutcome(exit_code, round(duration_ms, 1), diagnostics)
            self._host.log(
                "build",
                f"build exited with code {exit_code} in {duration_ms / 1000:.1f} s, "
                f"{outcome.diagnostic_count} diagnostic(s)",
            )
            return outcome

    async def stop(self) -> None:
        running = self._running
        if running is not None:
            await running.terminate()

    async def _collect(self, stream: asyncio.StreamReader) -> list[str]:
        lines: list[str] = []
        async for line in read_lines(stream):
            lines.append(line)
            self._host.log("build", line)
        return lines

    def _publish(self, diagnostics: dict[Path, list[Diagnostic]]) -> None:
        for path in sorted(self._published - diagnostics.keys()):
            self._host.publish_diagnostics("podlink-build", path, [])
        for path, items in sorted(diagnostics.items()):
            self._host.publish_diagnostics("podlink-build", path, items)
        self._published = set(diagnostics)
