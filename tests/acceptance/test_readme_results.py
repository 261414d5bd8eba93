"""README.md's results section runs as written (kept results, lookup by key, typed and async
producers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def test_inspect_job_shows_a_kept_result(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import quick_queue as qq
    from quick_queue.cli import app

    @qq.job(topic="till.total", keep_result=600)
    class Total:
        def perform(self, payload: Any, meta: qq.JobMeta) -> dict[str, float]:
            return {"total": 7.5}

    url = f"sqlite:///{tmp_path}/q.db"
    with qq.open(url) as db:
        queue = qq.JobQueue(db, jobs=[Total])
        job_id = queue.enqueue("corner", Total, None)
        queue.drain(timeout=10)
    shown = CliRunner().invoke(app, ["inspect", "job", "corner", job_id, "--db", url])
    assert shown.exit_code == 0, shown.output
    for words in ("completed", "finished", "kept until", '{"total": 7.5}'):
        assert words in shown.stdout, shown.stdout
