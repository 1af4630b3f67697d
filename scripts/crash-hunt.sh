#!/usr/bin/env bash
# The native encoder's crash hunt (tests/crash_hunt) on every CPython 3.10-3.13 this machine
# has: the project's .venv, plus one small venv per other version (anyio and orjson only;
# retrysafe itself comes from python/, whose abi3 extension loads on each). Every case runs
# in its own process, normal and under -X dev with PYTHONMALLOC=debug.
set -euo pipefail
cd "$(dirname "$0")/.."

pythons=(".venv/bin/python")
own=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
for minor in 10 11 12 13; do
    [ "3.$minor" = "$own" ] && continue
    base=""
    for candidate in "$HOME"/.pyenv/versions/3."$minor".*/bin/python3 "$(command -v python3."$minor" || true)"; do
        if [ -x "$candidate" ]; then base="$candidate"; break; fi
    done
    if [ -z "$base" ]; then
        echo "crash-hunt: no Python 3.$minor on this machine, skipped" >&2
        continue
    fi
    venv=".venv-hunt/3.$minor"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import anyio, orjson' 2>/dev/null; then
        rm -rf "$venv"
        "$base" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "anyio>=4.0" "orjson>=3.9"
    fi
    pythons+=("$venv/bin/python")
done

args=()
for python in "${pythons[@]}"; do args+=(--python "$python"); done
exec .venv/bin/python tests/crash_hunt/hunt.py "${args[@]}" "$@"
