"""Tutorial steps run on their own, as tutorial/README.md says: ``python -m tutorial.stepN_...``
from any folder, without ``QUICK_QUEUE_URL``, shares ``./coffee.db`` with the CLI the step runs,
and a step runs again on a used coffee.db (each step starts its shops afresh)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def step(name: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "QUICK_QUEUE_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-m", f"tutorial.{name}"], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "STEP FAILED" not in output and "Traceback" not in output
    return output


@pytest.mark.slow
def test_steps_run_alone_on_coffee_db_and_again_on_a_used_one(tmp_path: Path) -> None:
    for round_ in range(2):
        first = step("step1_orders", tmp_path)
        assert "downtown holds Ada's 3 jobs ready" in first
        assert (tmp_path / "coffee.db").exists()  # ./coffee.db of the folder it ran in
        assert "the payment succeeded on attempt 3" in step("step2_worker", tmp_path)
        assert "snoozed" in step("step5_snooze", tmp_path), round_
