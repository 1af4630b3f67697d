#!/usr/bin/env bash
# check-dist.sh WHEEL: the release wheel as users get it. Its tag and the symbols it needs
# (auditwheel: manylinux2014, glibc 2.17), then installed from the file alone into fresh
# venvs of Python 3.10 and 3.13, where it must canonicalize RFC 8785's vectors exactly.
set -euo pipefail
wheel="$1"
venv_bin="$(dirname "$0")/../.venv/bin"
case "$(basename "$wheel")" in
  *-cp310-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl) ;;
  *) echo "check-dist: not an abi3 manylinux2014 x86_64 wheel: $wheel" >&2; exit 1 ;;
esac
shown="$("$venv_bin/auditwheel" show "$wheel" | tr '\n' ' ')"
echo "$shown" | grep -q 'consistent with the following platform tag: *"manylinux_2_17_x86_64"' \
  || { echo "check-dist: auditwheel does not place $wheel at manylinux_2_17:" >&2; echo "$shown" >&2; exit 1; }
vectors="$(cd "$(dirname "$0")/../tests/data/jcs" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for version in 3.10 3.13; do
  python="$(ls -d "$HOME"/.pyenv/versions/"$version".*/bin/python"$version" 2>/dev/null | tail -1)"
  [ -n "$python" ] || python="$(command -v "python$version" || true)"
  { [ -n "$python" ] && "$python" -c pass 2>/dev/null; } \
    || { echo "check-dist: no Python $version here" >&2; exit 1; }
  "$python" -m venv "$work/$version"
  "$work/$version/bin/pip" install -q "$wheel"
  (cd "$work" && "$work/$version/bin/python" - "$vectors" <<'PY'
import json, pathlib, sys
from retrysafe import canonical_json
root = pathlib.Path(sys.argv[1])
names = sorted(p.stem for p in (root / "input").glob("*.json"))
assert len(names) == 6, names
for name in names:
    got = canonical_json(json.loads((root / "input" / f"{name}.json").read_bytes()))
    assert got == (root / "output" / f"{name}.json").read_bytes(), name
print(f"check-dist: Python {sys.version.split()[0]}: the wheel canonicalizes the 6 vectors exactly")
PY
  )
done
