"""Generate the protocol's Python types, TypeScript types and reference from schema.json.

``python protocol/generate.py`` rewrites the generated files; ``--check`` only compares them
with what the schema produces, names each stale one and exits 1, so CI catches a schema edit
that was not followed by a regeneration. ``--root`` points both modes at another checkout.

Standard library only: it runs before the project's dependencies are installed. Beside it,
``schema_model`` loads and validates the schema and ``emit_python``, ``emit_typescript`` and
``emit_reference`` write one output each.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from emit_python import python_module
from emit_reference import readme
from emit_typescript import typescript_module
from schema_model import (
    PYTHON_OUTPUT,
    README_OUTPUT,
    REGENERATE_COMMAND,
    SCHEMA_PATH,
    TYPESCRIPT_OUTPUT,
    Protocol,
    SchemaError,
    load_protocol,
)

GENERATORS: dict[Path, Callable[[Protocol], str]] = {
    PYTHON_OUTPUT: python_module,
    TYPESCRIPT_OUTPUT: typescript_module,
    README_OUTPUT: readme,
}


def render_all(root: Path) -> dict[Path, str]:
    protocol = load_protocol(root / SCHEMA_PATH)
    return {output: generate(protocol) for output, generate in GENERATORS.items()}


def stale_outputs(root: Path, rendered: dict[Path, str]) -> list[Path]:
    stale = []
    for output, content in rendered.items():
        target = root / output
        if not target.is_file() or target.read_bytes() != content.encode("utf-8"):
            stale.append(output)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a generated file differs from what the schema gives",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="the repository root holding protocol/schema.json (default: this checkout)",
    )
    options = parser.parse_args(argv)
    root: Path = options.root
    try:
        rendered = render_all(root)
    except SchemaError as error:
        print(f"{root / SCHEMA_PATH}: {error}", file=sys.stderr)
        return 2
    stale = stale_outputs(root, rendered)
    if options.check:
        for output in stale:
            print(f"stale: {output.as_posix()}", file=sys.stderr)
        if stale:
            print(f"generated protocol files are stale; run {REGENERATE_COMMAND}", file=sys.stderr)
            return 1
        return 0
    for output in stale:
        (root / output).parent.mkdir(parents=True, exist_ok=True)
        (root / output).write_text(rendered[output], encoding="utf-8", newline="\n")
        print(f"wrote {output.as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
