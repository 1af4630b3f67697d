"""``retrysafe vet PATH``: static checks of an agent's tools before deploy.

Reads the code with Python's ``ast`` (nothing is imported or run) and reports unsafe
combinations: untagged tools, writes without idempotency keys, retries and caches around side
effects, keys that deduplicate nothing, reads that write, blocking calls in async tools.
Silence one finding with ``# retrysafe: ignore[RS003]`` (or ``# retrysafe: ignore``) on its line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ._rules import RULES, Finding, check_source, iter_python_files

__all__ = ["RULES", "Finding", "check_path", "check_source", "main"]

LEVELS = {"warning": 1, "error": 2}


#: Files larger than this (bytes) are skipped with a notice: generated code, vendored
#: bundles. ``--max-bytes`` changes it.
MAX_BYTES = 2 * 1024 * 1024


def check_path(
    path: str | Path,
    *,
    max_bytes: int = MAX_BYTES,
    skipped: list[str] | None = None,
    errors: list[str] | None = None,
) -> list[Finding]:
    """Every finding in a file or under a directory. Files over ``max_bytes`` are not read;
    their names go to ``skipped`` when given. An internal error of vet's own on a file goes
    to ``errors`` when given (the other files are checked), else it propagates. Many files
    (over 1 MiB in all) are checked in a process per core."""
    files = iter_python_files(Path(path))
    sizes = [_size(file) for file in files]
    workers = min(os.cpu_count() or 1, len(files))
    if workers > 1 and sum(s for s in sizes if s <= max_bytes) > _PARALLEL_BYTES:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # Spawned, not forked: a fork of a process with threads (a caller's) may hang.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
            results = list(pool.map(_check_file, files, [max_bytes] * len(files), chunksize=4))
    else:
        results = [_check_file(file, max_bytes) for file in files]
    findings: list[Finding] = []
    for found, too_big, error in results:
        findings.extend(found)
        if too_big is not None and skipped is not None:
            skipped.append(too_big)
        if error is not None:
            if errors is None:
                raise RuntimeError(f"retrysafe vet: internal error on {error}")
            errors.append(error)
    return findings


#: Above this many bytes in all, files are checked in parallel processes.
_PARALLEL_BYTES = 1024 * 1024


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:
        return 0


def _check_file(file: Path, max_bytes: int) -> tuple[list[Finding], str | None, str | None]:
    """(findings, the file's name when over the cap, an internal error) for one file."""
    try:
        size = file.stat().st_size
        if size > max_bytes:
            return [], f"{file} ({size:,} bytes)", None
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [Finding(str(file), 1, 1, "RS000", f"cannot read: {exc}")], None, None
    try:
        return check_source(source, str(file)), None, None
    except Exception as exc:  # a bug of vet's own: not a finding about the file
        return [], None, f"{file}: {type(exc).__name__}: {exc}"


def _text(findings: list[Finding]) -> str:
    lines = [
        f"{f.path}:{f.line}:{f.column}: {f.code} [{f.level}] {f.message}\n    fix: {f.rule.fix}"
        for f in findings
    ]
    errors = sum(f.level == "error" for f in findings)
    lines.append(
        f"{len(findings)} finding(s): {errors} error(s), {len(findings) - errors} warning(s)"
    )
    return "\n".join(lines)


def _json(findings: list[Finding]) -> str:
    return json.dumps(
        [
            {
                "path": f.path,
                "line": f.line,
                "column": f.column,
                "code": f.code,
                "level": f.level,
                "message": f.message,
                "fix": f.rule.fix,
            }
            for f in findings
        ],
        indent=2,
    )


def _sarif(findings: list[Finding]) -> str:
    """SARIF 2.1.0, for code-scanning UIs."""
    used = sorted({f.code for f in findings} | set(RULES))
    return json.dumps(
        {
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {
                        "driver": {
                            "name": "retrysafe vet",
                            "informationUri": "https://pypi.org/project/retrysafe/",
                            "rules": [
                                {
                                    "id": code,
                                    "shortDescription": {"text": RULES[code].title},
                                    "help": {"text": RULES[code].fix},
                                    "defaultConfiguration": {"level": RULES[code].level},
                                }
                                for code in used
                            ],
                        }
                    },
                    "results": [
                        {
                            "ruleId": f.code,
                            "level": f.level,
                            "message": {"text": f"{f.message}. Fix: {f.rule.fix}"},
                            "locations": [
                                {
                                    "physicalLocation": {
                                        "artifactLocation": {"uri": Path(f.path).as_posix()},
                                        "region": {"startLine": f.line, "startColumn": f.column},
                                    }
                                }
                            ],
                        }
                        for f in findings
                    ],
                }
            ],
        },
        indent=2,
    )


_DESCRIPTION = """\
Static checks of an agent's tools before deploy. The code is read with Python's ast;
nothing is imported or run. Reports untagged tools (also plain functions handed to a
framework in tools=[...]), writes without idempotency keys, retries and caches around side
effects, random or clock keys, reads that write, and blocking calls in async tools.

Silence one finding with "# retrysafe: ignore[RS003]" (or "# retrysafe: ignore") on its
line."""


def _epilog() -> str:
    rules = "\n".join(
        f"  {code}  {rule.level:<7}  {rule.title}" for code, rule in sorted(RULES.items())
    )
    return (
        f"rules:\n{rules}\n\nexit status: 0 clean, 1 findings at or above --fail-on, 2 usage error"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 clean, 1 findings at or above ``--fail-on``, 2 a usage error or an
    internal error of vet's own."""
    parser = argparse.ArgumentParser(
        prog="retrysafe vet",
        description=_DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", help="files or directories to check")
    parser.add_argument(
        "--format",
        choices=["text", "json", "sarif"],
        default="text",
        help="report format: text for people, json for scripts, sarif for code-scanning UIs "
        "(default: text)",
    )
    parser.add_argument(
        "--fail-on",
        choices=["error", "warning", "never"],
        default="warning",
        help="exit 1 when a finding at or above this level is found; never: always exit 0 "
        "(default: warning)",
    )
    parser.add_argument("--output", help="write the report to this file instead of stdout")
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=MAX_BYTES,
        help=f"skip files larger than this, with a notice (default: {MAX_BYTES:,})",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"retrysafe vet: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    skipped: list[str] = []
    errors: list[str] = []
    findings = [
        f
        for p in args.paths
        for f in check_path(p, max_bytes=args.max_bytes, skipped=skipped, errors=errors)
    ]
    for name in skipped:
        print(
            f"retrysafe vet: skipped {name}: larger than --max-bytes {args.max_bytes:,}",
            file=sys.stderr,
        )
    report = {"text": _text, "json": _json, "sarif": _sarif}[args.format](findings)
    if args.output:
        Path(args.output).write_text(report + "\n", encoding="utf-8")
    else:
        _print_to_pipe(report)
    for error in errors:
        print(f"retrysafe vet: internal error on {error}", file=sys.stderr)
    if errors:
        return 2
    if args.fail_on == "never":
        return 0
    threshold = LEVELS[args.fail_on]
    return 1 if any(LEVELS[f.level] >= threshold for f in findings) else 0


def _print_to_pipe(report: str) -> None:
    """Print the report; a reader that stops early (``vet . | head``) is not an error."""
    try:
        print(report)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at devnull so that flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
