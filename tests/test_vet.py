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


def test_a_read_tool_writing_through_a_client_bound_by_with_is_found() -> None:
    """``async with httpx.AsyncClient() as c: c.delete(...)`` in a READ tool (missed: the
    receiver's name says nothing of HTTP)."""
    source = (
        "import httpx\n"
        "from retrysafe import tool\n"
        "@tool.read\n"
        "async def lookup(item: str) -> str:\n"
        '    """Look an item up."""\n'
        "    async with httpx.AsyncClient() as c:\n"
        "        await c.delete(f'https://api/items/{item}')\n"
        "    return item\n"
        "@tool.read\n"
        "def peek(item: str) -> str:\n"
        '    """Peek at an item."""\n'
        "    s = requests.Session()\n"
        "    s.post('https://api/items', json={})\n"
        "    return item\n"
    )
    found = [(f.code, f.line) for f in check_source(source, "reads.py")]
    assert ("RS007", 7) in found and ("RS007", 13) in found


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("x = 1 + " + " + ".join(["1"] * 200_000) + "\n", "nested too deeply"),
        ("x = 1\x00\n", "null bytes"),
        ("def broken(:\n", "cannot parse"),
    ],
)
def test_a_file_that_cannot_be_parsed_is_rs000_and_the_run_goes_on(
    tmp_path: Path, source: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 200,000-term expression (a RecursionError), a NUL byte (a ValueError) and a syntax
    error each end as one RS000 finding; the next file is still checked; exit 1 (findings),
    never a traceback."""
    (tmp_path / "a_bad.py").write_text(source)
    (tmp_path / "b_good.py").write_text("from retrysafe import tool\n@tool.read\ndef f(): pass\n")
    findings = check_path(tmp_path)
    bad = [f for f in findings if f.path.endswith("a_bad.py")]
    assert 1 == len(bad) and "RS000" == bad[0].code and reason in bad[0].message, bad
    assert any(f.path.endswith("b_good.py") for f in findings)  # RS009: no docstring
    assert 1 == main([str(tmp_path), "--format", "json"])
    assert "Traceback" not in capsys.readouterr().err


def test_files_over_the_size_cap_are_skipped_with_a_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "generated.py").write_text("x = 1\n" * 100_000)
    assert 0 == main([str(tmp_path), "--max-bytes", "10000"])
    err = capsys.readouterr().err
    assert "skipped" in err and "generated.py" in err and "--max-bytes 10,000" in err


def test_an_internal_error_exits_2_and_the_other_files_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug of vet's own on one file is exit 2 (not 1, the code for findings), named on
    stderr, and the other files are still reported."""
    import retrysafe.vet as vet

    real = vet.check_source

    def flaky(source: str, path: str = "<string>") -> list[vet.Finding]:
        if path.endswith("a.py"):
            raise KeyError("a bug")
        return real(source, path)

    monkeypatch.setattr(vet, "check_source", flaky)
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("from retrysafe import tool\n@tool.read\ndef f(): pass\n")
    assert 2 == main([str(tmp_path), "--format", "json"])
    captured = capsys.readouterr()
    assert "internal error on" in captured.err and "a.py: KeyError" in captured.err
    assert "b.py" in captured.out


def test_many_files_are_checked_in_parallel_with_the_same_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over 1 MiB in all, files go to a process per core: the findings are the same, in
    the same order, as one process finds."""
    import shutil

    import retrysafe.vet as vet

    for index in range(3):
        shutil.copy(FIXTURES / "unsafe_tools.py", tmp_path / f"copy_{index}.py")
    alone = check_path(tmp_path)
    monkeypatch.setattr(vet, "_PARALLEL_BYTES", 0)
    assert alone == vet.check_path(tmp_path) and len(alone) > 10
