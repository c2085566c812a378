"""Build output -> problems -> diagnostics on local files, table-driven, one case per format.

The samples are what the tools print (ruff 0.17, mypy, gcc 12, Python 3.11, pyright 1.1).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from podlink.build import BuildProblem, parse_build_output, to_diagnostics
from podlink.diagnostics import Diagnostic, RelatedLocation
from podlink.pathmap import Frame, MappedRoot, PathMap


def at(path: str, line: int, name: str = "") -> Frame:
    return Frame(path, line, name)


PYTHON_TRACEBACK = """\
Traceback (most recent call last):
  File "/app/manage.py", line 7, in <module>
    outer()
  File "/app/app/jobs.py", line 5, in outer
    inner()
    ^^^^^^^
  File "/app/app/jobs.py", line 2, in inner
    raise ValueError("boom")
ValueError: boom
"""

CHAINED_TRACEBACK = """\
Traceback (most recent call last):
  File "/app/a.py", line 2, in <module>
    int("x")
ValueError: invalid literal for int() with base 10: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/a.py", line 4, in <module>
    raise RuntimeError("could not parse")
RuntimeError: could not parse
"""

COMPILEALL = """\
Listing '.'...
*** Error compiling './bad.py'...
  File "./bad.py", line 1
    def f(:
          ^
SyntaxError: invalid syntax

"""

PY_COMPILE = """\
  File "pkg/bad.py", line 3
    return (
           ^
SyntaxError: '(' was never closed
"""

OLD_PY_COMPILE = "Sorry: IndentationError: unexpected indent (bad.py, line 3)\n"

RUFF_CONCISE = """\
bad.py:1:7: invalid-syntax: Expected a parameter or the end of the parameter list
lint.py:1:8: F401 [*] `os` imported but unused
lint.py:4:12: F821 Undefined name `y`
Found 3 errors.
[*] 1 fixable with `--fix`.
"""

FLAKE8 = """\
./lint.py:1:1: F401 'os' imported but unused
./lint.py:3:1: E302 expected 2 blank lines, found 1
./lint.py:9:80: W291 trailing whitespace
"""

RUFF_FULL = """\
F401 [*] `os` imported but unused
 --> lint.py:1:8
  |
1 | import os
  |        ^^
2 |
3 | def f(x):
  |
help: Remove unused import: `os`

invalid-syntax: Expected `)`, found newline
 --> bad.py:1:8
  |
1 | def f(:
  |        ^

Found 2 errors.
"""

MYPY = """\
typed.py:1: error: Incompatible types in assignment (expression has type "str", variable has type "int")  [assignment]
typed.py:3:12: error: Incompatible return value type (got "int", expected "str")  [return-value]
typed.py:3: note: See https://mypy.rtfd.io/en/stable/_refs.html#code-return-value
Found 2 errors in 1 file (checked 1 source file)
"""  # noqa: E501

PYRIGHT = """\
/app/x.py
  /app/x.py:3:5 - error: "foo" is not defined (reportUndefinedVariable)
  /app/x.py:7:1 - warning: Import "requests" could not be resolved (reportMissingModuleSource)
  /app/x.py:9:12 - error: Argument of type "Literal['a']" cannot be assigned to parameter "n"
    "Literal['a']" is not assignable to "int" (reportArgumentType)
3 errors, 1 warning, 0 informations
"""

GCC = """\
prog.c: In function 'main':
prog.c:4:10: error: 'undefined_var' undeclared (first use in this function)
    4 |   return undefined_var;
      |          ^~~~~~~~~~~~~
prog.c:4:10: note: each undeclared identifier is reported only once for each function it appears in
prog.c:3:7: warning: unused variable 'unused' [-Wunused-variable]
    3 |   int unused;
      |       ^~~~~~
src/x.c:1:10: fatal error: missing.h: No such file or directory
compilation terminated.
"""

CLANG = """\
In file included from main.c:1:
./util.h:2:5: error: unknown type name 'strng'; did you mean 'string'?
    2 |     strng name;
      |     ^
1 error generated.
"""

GENERIC = """\
make: *** [Makefile:3: all] Error 1
docs/index.md:12: broken link to `setup.md`
Error: something went wrong
"""

PARSE_CASES: dict[str, tuple[str, list[BuildProblem]]] = {
    "python traceback: every frame, the exception line as message": (
        PYTHON_TRACEBACK,
        [
            BuildProblem(
                (
                    at("/app/manage.py", 7, "<module>"),
                    at("/app/app/jobs.py", 5, "outer"),
                    at("/app/app/jobs.py", 2, "inner"),
                ),
                "ValueError: boom",
            )
        ],
    ),
    "chained traceback: only the exception that ended it": (
        CHAINED_TRACEBACK,
        [BuildProblem((at("/app/a.py", 4, "<module>"),), "RuntimeError: could not parse")],
    ),
    "compileall": (
        COMPILEALL,
        [BuildProblem((at("./bad.py", 1),), "SyntaxError: invalid syntax")],
    ),
    "py_compile": (
        PY_COMPILE,
        [BuildProblem((at("pkg/bad.py", 3),), "SyntaxError: '(' was never closed")],
    ),
    "old py_compile": (
        OLD_PY_COMPILE,
        [BuildProblem((at("bad.py", 3),), "IndentationError: unexpected indent")],
    ),
    "ruff concise": (
        RUFF_CONCISE,
        [
            BuildProblem(
                (at("bad.py", 1),),
                "Expected a parameter or the end of the parameter list",
                column=7,
                code="invalid-syntax",
            ),
            BuildProblem((at("lint.py", 1),), "`os` imported but unused", column=8, code="F401"),
            BuildProblem((at("lint.py", 4),), "Undefined name `y`", column=12, code="F821"),
        ],
    ),
    "flake8": (
        FLAKE8,
        [
            BuildProblem((at("./lint.py", 1),), "'os' imported but unused", column=1, code="F401"),
            BuildProblem(
                (at("./lint.py", 3),), "expected 2 blank lines, found 1", column=1, code="E302"
            ),
            BuildProblem(
                (at("./lint.py", 9),),
                "trailing whitespace",
                column=80,
                severity="warning",
                code="W291",
            ),
        ],
    ),
    "ruff full, with the location on the next line": (
        RUFF_FULL,
        [
            BuildProblem((at("lint.py", 1),), "`os` imported but unused", column=8, code="F401"),
            BuildProblem(
                (at("bad.py", 1),),
                "Expected `)`, found newline",
                column=8,
                code="invalid-syntax",
            ),
        ],
    ),
    "mypy, with and without columns, notes as information": (
        MYPY,
        [
            BuildProblem(
                (at("typed.py", 1),),
                'Incompatible types in assignment (expression has type "str", variable has '
                'type "int")',
                code="assignment",
            ),
            BuildProblem(
                (at("typed.py", 3),),
                'Incompatible return value type (got "int", expected "str")',
                column=12,
                code="return-value",
            ),
            BuildProblem(
                (at("typed.py", 3),),
                "See https://mypy.rtfd.io/en/stable/_refs.html#code-return-value",
                severity="information",
            ),
        ],
    ),
    "pyright, a message over two lines": (
        PYRIGHT,
        [
            BuildProblem(
                (at("/app/x.py", 3),),
                '"foo" is not defined',
                column=5,
                code="reportUndefinedVariable",
            ),
            BuildProblem(
                (at("/app/x.py", 7),),
                'Import "requests" could not be resolved',
                column=1,
                severity="warning",
                code="reportMissingModuleSource",
            ),
            BuildProblem(
                (at("/app/x.py", 9),),
                'Argument of type "Literal[\'a\']" cannot be assigned to parameter "n"\n'
                '"Literal[\'a\']" is not assignable to "int"',
                column=12,
                code="reportArgumentType",
            ),
        ],
    ),
    "gcc: errors, notes, warnings with their flag, fatal errors": (
        GCC,
        [
            BuildProblem(
                (at("prog.c", 4),), "'undefined_var' undeclared (first use in this function)", 10
            ),
            BuildProblem(
                (at("prog.c", 4),),
                "each undeclared identifier is reported only once for each function it appears in",
                column=10,
                severity="information",
            ),
            BuildProblem(
                (at("prog.c", 3),),
                "unused variable 'unused'",
                column=7,
                severity="warning",
                code="-Wunused-variable",
            ),
            BuildProblem((at("src/x.c", 1),), "missing.h: No such file or directory", 10),
        ],
    ),
    "clang, with an include chain that stays text": (
        CLANG,
        [
            BuildProblem(
                (at("./util.h", 2),), "unknown type name 'strng'; did you mean 'string'?", 5
            )
        ],
    ),
    "any other file:line: message": (
        GENERIC,
        [BuildProblem((at("docs/index.md", 12),), "broken link to `setup.md`")],
    ),
    "nothing known": ("all good\n3 files checked\n", []),
}


@pytest.mark.parametrize("output, expected", PARSE_CASES.values(), ids=PARSE_CASES.keys())
def test_parse(output: str, expected: list[BuildProblem]) -> None:
    assert parse_build_output(output) == expected


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """Local files for the target's /app, one ignored folder, one file missing locally."""
    for name in ("manage.py", "app/jobs.py", "bad.py", "pkg/bad.py", "typed.py", ".venv/x.py"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n" * 20)
    return tmp_path


@pytest.fixture
def paths(workspace: Path) -> PathMap:
    return PathMap([MappedRoot(workspace, "/app", lambda path: path.startswith(".venv/"))])


def test_tracebacks_go_to_the_innermost_workspace_frame(workspace: Path, paths: PathMap) -> None:
    found = to_diagnostics(parse_build_output(PYTHON_TRACEBACK), paths, "/app")
    assert found == {
        workspace / "app/jobs.py": [
            Diagnostic(
                line=2,
                message="ValueError: boom",
                related=(
                    RelatedLocation(workspace / "manage.py", 7, "in <module>"),
                    RelatedLocation(workspace / "app/jobs.py", 5, "in outer"),
                ),
            )
        ]
    }


def test_frames_outside_the_workspace_are_skipped(workspace: Path, paths: PathMap) -> None:
    output = (
        "Traceback (most recent call last):\n"
        '  File "/app/manage.py", line 3, in <module>\n'
        '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
        '  File "/app/.venv/x.py", line 1, in helper\n'
        "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n"
    )
    [(path, [diagnostic])] = to_diagnostics(parse_build_output(output), paths, "/app").items()
    assert (path, diagnostic.line, diagnostic.related) == (workspace / "manage.py", 3, ())


def test_relative_paths_are_relative_to_the_working_folder(workspace: Path, paths: PathMap) -> None:
    found = to_diagnostics(parse_build_output(COMPILEALL + PY_COMPILE), paths, "/app")
    assert sorted(
        (path.relative_to(workspace).as_posix(), d.line) for path, ds in found.items() for d in ds
    ) == [
        ("bad.py", 1),
        ("pkg/bad.py", 3),
    ]
    inside_pkg = to_diagnostics(parse_build_output("bad.py:2:3: F401 unused\n"), paths, "/app/pkg")
    assert list(inside_pkg) == [workspace / "pkg/bad.py"]


def test_columns_and_codes_reach_the_diagnostic(workspace: Path, paths: PathMap) -> None:
    found = to_diagnostics(parse_build_output(MYPY), paths, "/app")
    assert found[workspace / "typed.py"][1] == Diagnostic(
        line=3,
        column=12,
        message='Incompatible return value type (got "int", expected "str")',
        code="return-value",
    )


def test_unknown_files_stay_in_the_log(paths: PathMap) -> None:
    # lint.py is not in the workspace, the others are outside /app or ignored there.
    output = RUFF_CONCISE.replace("bad.py", "/elsewhere/bad.py") + "/app/.venv/x.py:1: error: x\n"
    assert to_diagnostics(parse_build_output(output), paths, "/app") == {}
