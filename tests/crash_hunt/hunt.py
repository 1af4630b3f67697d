"""Runs every case of cases.py in a subprocess of its own, catching and naming crashes.

    python tests/crash_hunt/hunt.py [--python PATH ...] [--modes normal,dev] [--jobs N] [CASE ...]

Each (interpreter, mode, case) is one fresh process: ``normal``, and ``dev`` (``-X dev`` with
``PYTHONMALLOC=debug``, which fills freed memory and checks the allocator's bounds, so a read
of freed memory shows up). The retrysafe package is taken from ``python/`` through
PYTHONPATH (its abi3 extension loads on every CPython from 3.10), so each interpreter needs
only anyio and orjson. Exits 1 if any case crashed, failed or timed out, naming each; prints
the case count per interpreter.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CASES = HERE / "cases.py"
TIMEOUT = 300.0


@dataclass(frozen=True)
class Run:
    python: str
    mode: str
    case: str


@dataclass(frozen=True)
class Outcome:
    run: Run
    status: str  # "ok", "crashed: SIGSEGV", "failed: exit 1", "timed out"
    seconds: float
    tail: str


def version_of(python: str) -> str:
    done = subprocess.run(
        [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def list_cases(python: str) -> list[str]:
    done = subprocess.run(
        [python, str(CASES), "--list"], capture_output=True, text=True, env=env_for("normal")
    )
    if done.returncode != 0:
        raise SystemExit(f"cannot list the cases with {python}:\n{done.stderr}")
    return done.stdout.split()


def env_for(mode: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python"), env.get("PYTHONPATH")]))
    env["PYTHONFAULTHANDLER"] = "1"
    env.pop("PYTHONMALLOC", None)
    if mode == "dev":
        env["PYTHONMALLOC"] = "debug"
        env["PYTHONDEVMODE"] = "1"
    return env


def run_one(run: Run) -> Outcome:
    start = time.monotonic()
    try:
        done = subprocess.run(
            [run.python, str(CASES), run.case],
            capture_output=True,
            text=True,
            env=env_for(run.mode),
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        tail = (e.stderr or b"")[-2000:]
        text = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return Outcome(run, "timed out", time.monotonic() - start, text)
    seconds = time.monotonic() - start
    if done.returncode < 0:
        status = f"crashed: {signal.Signals(-done.returncode).name}"
    elif done.returncode != 0:
        status = f"failed: exit {done.returncode}"
    elif "panicked" in done.stderr:
        status = "failed: a Rust panic was reported"
    else:
        status = "ok"
    return Outcome(run, status, seconds, (done.stderr or done.stdout)[-3000:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help="interpreter (repeatable)")
    parser.add_argument("--modes", default="normal,dev")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("cases", nargs="*")
    args = parser.parse_args()
    pythons = args.python or [sys.executable]
    modes = args.modes.split(",")
    runs = []
    for python in pythons:
        names = args.cases or list_cases(python)
        runs += [Run(python, mode, name) for mode in modes for name in names]
    versions = {python: version_of(python) for python in pythons}
    print(f"crash hunt: {len(runs)} runs on {', '.join(versions.values())}", flush=True)
    outcomes: list[Outcome] = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for outcome in pool.map(run_one, runs):
            outcomes.append(outcome)
            if outcome.status != "ok":
                run = outcome.run
                print(f"  {versions[run.python]} {run.mode} {run.case}: {outcome.status}")
                print("    " + outcome.tail.strip().replace("\n", "\n    "), flush=True)
    bad = [o for o in outcomes if o.status != "ok"]
    for python, version in versions.items():
        mine = [o for o in outcomes if o.run.python == python]
        crashed = sum(o.status.startswith("crashed") for o in mine)
        others = sum(o.status != "ok" and not o.status.startswith("crashed") for o in mine)
        slowest = max(mine, key=lambda o: o.seconds)
        print(
            f"Python {version}: {len(mine)} cases ({len(mine) // len(modes)} x {len(modes)} modes), "
            f"{crashed} crashed, {others} failed or timed out; "
            f"slowest {slowest.run.case} ({slowest.run.mode}) {slowest.seconds:.1f} s"
        )
    print(f"crash hunt: {len(outcomes) - len(bad)} of {len(outcomes)} runs ended cleanly")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
