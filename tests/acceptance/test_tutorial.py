"""The coffee-shop tutorial runs end to end and every claim it prints holds, so the tutorial
cannot rot: ``python -m tutorial.demo`` exits 0 only if each step behaved as described."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_coffee_shop_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.pop("QUICK_QUEUE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "tutorial.demo", "--db", f"sqlite:///{tmp_path}/coffee.db"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "All 8 steps behaved as described" in output
    assert "Traceback" not in output
    for step in range(1, 9):
        assert f"=== Step {step}:" in output
    assert output.count("[ok]") >= 15
