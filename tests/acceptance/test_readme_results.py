"""README.md's results section runs as written (kept results, lookup by key, typed and async
producers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_results_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    block = text[text.index("<!-- results:begin -->"):text.index("<!-- results:end -->")]
    code = block.split("```python\n", 1)[1].rsplit("```", 1)[0]
    (tmp_path / "results_app.py").write_text(code)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "results_app.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "{'order': 'A-1', 'printed': '3.50 EUR'}"
    assert lines[1].startswith("completed 1 {'order': 'A-1'")
    assert lines[2] == "ready"
    assert (ROOT / "docs" / "results.md").exists()
