"""Run every ```python block of a Markdown page, in order, in one namespace, as a reader
would paste them into ``python -m asyncio``: a block with a top-level ``await`` or
``async with`` runs in an event loop of its own, the others as plain code.

Usage: python tests/docs_runner.py PAGE.md
"""

from __future__ import annotations

import ast
import asyncio
import re
import sys
from pathlib import Path

BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def blocks(text: str) -> list[tuple[int, str]]:
    """(first line, source) of each python block."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def main(page: str) -> int:
    text = Path(page).read_text(encoding="utf-8")
    scope: dict[str, object] = {"__name__": "__main__"}
    for line, source in blocks(text):
        name = f"{page}:{line}"
        padded = "\n" * (line - 1) + source  # tracebacks name the page's own lines
        try:
            code = compile(padded, name, "exec")
        except SyntaxError:
            code = compile(padded, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            coroutine = eval(code, scope)  # the docs' own code
            asyncio.run(coroutine)
        else:
            exec(code, scope)  # the docs' own code
        print(f"ran {name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
