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
    assert "All 10 steps behaved as described" in output
    assert "Traceback" not in output
    for step in range(1, 11):
        assert f"=== Step {step}:" in output
    assert output.count("[ok]") >= 15


def test_the_dashboard_step_is_skipped_without_the_web_extra(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["QUICK_QUEUE_URL"] = f"sqlite:///{tmp_path}/coffee.db"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    block = "import sys\nsys.modules['fastapi'] = None\n"  # as in an install without [web]
    result = subprocess.run(
        [sys.executable, "-c", block + "from tutorial import step9_dashboard as s\ns.main()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Skipped: the dashboard needs the web extra (pip install "quick-queue-zones[web]")' \
        in result.stdout
