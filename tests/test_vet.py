"""retrysafe vet on fixture projects with known findings, and on the project's own examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrysafe.vet import check_path, check_source, main

FIXTURES = Path(__file__).parent / "fixtures" / "vet"
ROOT = Path(__file__).resolve().parent.parent


def test_every_rule_fires_on_the_unsafe_fixture() -> None:
    """Each rule RS001..RS010 finds what it is for, at the right line."""
    findings = check_path(FIXTURES / "unsafe_tools.py")
    codes = sorted({f.code for f in findings})
    assert [f"RS{i:03d}" for i in range(1, 11)] == codes
    lines = {(f.code, f.line) for f in findings}
    source = (FIXTURES / "unsafe_tools.py").read_text().splitlines()
    for code, line in lines:
        assert code in source[line - 1], (code, line, source[line - 1])


def test_the_safe_fixture_and_the_examples_are_clean() -> None:
    """Safe forms of the same tools, and examples/, give no findings."""
    assert [] == check_path(FIXTURES / "safe_tools.py")
    assert [] == check_path(ROOT / "examples")


def test_silencing_one_finding() -> None:
    """`# retrysafe: ignore[CODE]` silences that code on its line only."""
    source = (
        "from retrysafe import tool\n@tool\ndef f(x):  # retrysafe: ignore[RS001]\n    return x\n"
    )
    assert ["RS009"] == [f.code for f in check_source(source)]
    assert [] == check_source(source.replace("[RS001]", ""))


def test_exit_codes_and_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """0 clean, 1 findings at or above --fail-on, 2 usage errors; JSON and SARIF reports."""
    unsafe = str(FIXTURES / "unsafe_tools.py")
    assert 0 == main([str(FIXTURES / "safe_tools.py")])
    assert 1 == main([unsafe])
    assert 1 == main([unsafe, "--fail-on", "error"])
    assert 0 == main([unsafe, "--fail-on", "never"])
    assert 2 == main(["/no/such/path"])
    assert 2 == main(["--format", "xml", unsafe])
    capsys.readouterr()
    main([unsafe, "--format", "json", "--fail-on", "never"])
    report = json.loads(capsys.readouterr().out)
    assert {"path", "line", "column", "code", "level", "message", "fix"} == set(report[0])
    out = tmp_path / "vet.sarif"
    main([unsafe, "--format", "sarif", "--output", str(out), "--fail-on", "never"])
    sarif = json.loads(out.read_text())
    assert "2.1.0" == sarif["version"]
    results = sarif["runs"][0]["results"]
    assert len(results) == len(check_path(unsafe))
    assert results[0]["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1


def test_warnings_only_pass_with_fail_on_error(tmp_path: Path) -> None:
    """A file with warnings only fails at --fail-on warning and passes at error."""
    f = tmp_path / "w.py"
    f.write_text(
        "from retrysafe import tool\n@tool\ndef lookup(x):\n    '''Doc.'''\n    return x\n"
    )
    assert 1 == main([str(f)])
    assert 0 == main([str(f), "--fail-on", "error"])


def test_syntax_errors_are_reported_not_raised(tmp_path: Path) -> None:
    """A file that does not parse is a finding, not a crash."""
    f = tmp_path / "bad.py"
    f.write_text("def f(:\n")
    assert ["RS000"] == [x.code for x in check_path(f)]


def test_the_new_cases_are_found_where_they_are() -> None:
    """A key built on the line before, a clock key in headers, a plain function handed to a
    framework, MCP annotations read as the effect."""
    findings = check_path(FIXTURES / "unsafe_tools.py")
    messages = {(f.code, f.message) for f in findings}
    assert ("RS001", "tool 'send_invoice' has no effect tag (treated as DESTRUCTIVE)") in messages
    assert ("RS002", "DESTRUCTIVE tool 'wipe_cart' has no idempotency key source") in messages
    source = (FIXTURES / "unsafe_tools.py").read_text().splitlines()
    rs006 = [source[f.line - 1] for f in findings if f.code == "RS006"]
    assert any("idempotency_key=key" in line for line in rs006)
    assert any('"Idempotency-Key"' in line for line in rs006)


def test_a_name_assigned_more_than_once_is_not_guessed() -> None:
    source = (
        "import uuid\n"
        "def f(order):\n"
        "    key = str(uuid.uuid4())\n"
        "    key = order['id']\n"
        "    pay(1, idempotency_key=key)\n"
    )
    assert [] == check_source(source)
    assert ["RS006"] == [
        f.code for f in check_source(source.replace("    key = order['id']\n", ""))
    ]


def test_a_closed_pipe_and_the_help(tmp_path: Path) -> None:
    """`vet ... | head -1` ends quietly; --help explains each option and lists the rules."""
    import subprocess
    import sys

    cli = [sys.executable, "-m", "retrysafe", "vet"]
    piped = subprocess.run(
        " ".join([*cli, str(FIXTURES), "|", "head", "-1"]),
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr, piped.stderr
    assert "RS00" in piped.stdout
    helped = subprocess.run([*cli, "--help"], capture_output=True, text=True, timeout=60)
    assert 0 == helped.returncode
    assert "``" not in helped.stdout and ":func:" not in helped.stdout
    assert "sarif for code-scanning" in helped.stdout and "exit 1 when a finding" in helped.stdout
    assert "RS010" in helped.stdout
