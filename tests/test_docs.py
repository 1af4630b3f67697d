"""Every Python block of the documentation and of the README runs as written (in order,
page by page: tests/docs_runner.py), and the site builds with warnings as errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .docs_runner import blocks

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if blocks(p.read_text())
]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_python_block_of_the_page_runs(page: Path, tmp_path: Path, postgres_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": postgres_url, "PYTHONPATH": str(ROOT / "python")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "docs_runner.py"), str(page)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    assert len(blocks(page.read_text())) == done.stdout.count("ran ")


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    if not mkdocs.exists():
        pytest.skip("mkdocs comes with the docs extra (`make install`)")
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "-d", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert 0 == done.returncode, done.stderr
    reference = (tmp_path / "site" / "reference" / "retrysafe" / "index.html").read_text()
    for name in ("idempotent", "cache_tool", "canonical_json", "LoopGuard", "session"):
        assert f'id="retrysafe.{name}"' in reference


def test_the_readme_s_links_name_files_that_exist() -> None:
    import re

    text = (ROOT / "README.md").read_text()
    targets = [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text) if "://" not in t]
    assert len(targets) >= 10
    assert [t for t in targets if not (ROOT / t).exists()] == []
