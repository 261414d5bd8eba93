"""README.md's async handlers section runs as written: async and plain handlers in one
drain, the async ones awaited together on the worker's loop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_async_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    block = text[text.index("<!-- async:begin -->"):text.index("<!-- async:end -->")]
    code = block.split("```python\n", 1)[1].rsplit("```", 1)[0]
    (tmp_path / "async_app.py").write_text(code)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "async_app.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert sorted(lines[:4]) == [
        "[shop-0] told table 1 the order is ready", "[shop-1] tallied 12 cups",
        "[shop-1] told table 2 the order is ready", "[shop-2] told table 3 the order is ready",
    ]
    assert lines[4:] == ["completed=4"]
