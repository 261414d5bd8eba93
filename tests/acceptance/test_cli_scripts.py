"""The scripts a user runs besides the CLI: ``scripts/test``'s skip summary (one line per skip
reason, then pytest's count) and ``scripts/bench.py``'s argument checks (no benchmark runs
here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_skips_are_summed_up_in_one_line_per_reason(tmp_path: Path) -> None:
    (tmp_path / "test_many_skips.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('n', range(5))\n"
        "def test_needs_a_cluster(n):\n"
        "    pytest.skip('no FoundationDB cluster: set X')\n"
        "def test_other():\n"
        "    pytest.skip('something else')\n"
        "def test_runs():\n"
        "    assert 1 + 1 == 2\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # the options scripts/test passes to pytest
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-ra", "-rfE", "-p", "tests._skip_summary",
         "-p", "no:cacheprovider", "test_many_skips.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[-3:] == ["5 skipped: no FoundationDB cluster: set X",
                          "1 skipped: something else", lines[-1]]
    assert "1 passed, 6 skipped" in lines[-1]
    assert "SKIPPED" not in result.stdout
    assert "-p tests._skip_summary" in (ROOT / "scripts" / "test").read_text()


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), *args],
                          capture_output=True, text=True, timeout=60)


def test_bench_rejects_an_unknown_bench_without_a_traceback() -> None:
    result = bench("--only", "drain,nothing")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unknown bench(es) 'nothing'" in result.stderr and "scheduled" in result.stderr


def test_bench_help_offers_only_what_it_accepts() -> None:
    result = bench("--help")
    assert result.returncode == 0
    assert "--normal" not in result.stdout
    assert "--only" in result.stdout and "--quick" in result.stdout


def test_scripts_test_keeps_pytests_count_with_a_user_q(tmp_path: Path) -> None:
    """``./scripts/test -q`` used to run ``pytest -q -q``, which hides the final count. The
    pytest part of the script (after its lint and type checks) runs here as written."""
    script = (ROOT / "scripts" / "test").read_text()
    pytest_part = script[script.index('echo "== pytest"'):]
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert True\n")
    (tmp_path / "run").write_text(f'cd "{ROOT}"\n' + pytest_part.replace(
        ".venv/bin/python", sys.executable))
    result = subprocess.run(
        ["bash", str(tmp_path / "run"), "-q", "-p", "no:cacheprovider",
         str(tmp_path / "test_one.py")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("1 passed")
