"""README.md stays true to the code: its configuration table is generated from the docstrings
of ``quick_queue/settings.py`` and must match it, and the commands it shows exist.

Regenerate the table after changing a setting::

    QQ_UPDATE_README=1 python -m pytest tests/acceptance/test_tutorial_readme.py
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from typer.testing import CliRunner

from quick_queue.cli import app
from quick_queue.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def settings_docs() -> dict[str, str]:
    """Each field's docstring (the string literal after it); fields that share one docstring
    (written once after the last of them) all get it."""
    tree = ast.parse((ROOT / "quick_queue" / "settings.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    docs: dict[str, str] = {}
    waiting: list[str] = []
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            waiting.append(node.target.id)
        elif (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
              and isinstance(node.value.value, str) and waiting):
            text = " ".join(node.value.value.split())
            for name in waiting:
                docs[name] = text
            waiting = []
    return docs


def settings_table() -> str:
    docs = settings_docs()
    rows = ["| setting | default | what it does |", "|---|---|---|"]
    said: set[str] = set()
    for field in fields(Settings):
        default = field.default if field.default is not MISSING else None
        doc = docs.get(field.name, "")
        if doc in said:
            doc = "(see above)"
        said.add(doc)
        doc = doc.replace('|', '/').replace('*', r'\*')
        rows.append(f"| `{field.name}` | `{default!r}` | {doc} |")
    return "\n".join(rows)


def test_readme_configuration_table_matches_settings() -> None:
    text = README.read_text()
    assert BEGIN in text and END in text, "README.md lost its settings markers"
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    expected = "\n" + settings_table() + "\n"
    if text[start:end] != expected and os.environ.get("QQ_UPDATE_README"):
        README.write_text(text[:start] + expected + text[end:])
        return
    assert text[start:end] == expected, (
        "README.md's settings table is out of date; regenerate it with "
        "QQ_UPDATE_README=1 python -m pytest tests/acceptance/test_tutorial_readme.py"
    )


def test_readme_cli_commands_exist() -> None:
    text = README.read_text()
    commands = set(re.findall(r"quick-queue ([a-z]+)", text))
    assert {"inspect", "worker", "enqueue", "retry", "purge", "cancel"} <= commands
    for command in commands:
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0, f"README mentions quick-queue {command}: {result.output}"


def test_readme_points_at_files_that_exist() -> None:
    text = README.read_text()
    for path in ("scripts/demo", "scripts/test", ".ci/run", "tutorial/README.md",
                 "scripts/bench.py", "scripts/bench_kv.py"):
        assert path in text
        assert (ROOT / path).exists(), path


def test_readme_quickstart_runs(tmp_path: Path) -> None:
    text = README.read_text()
    block = text[text.index("<!-- quickstart:begin -->"):text.index("<!-- quickstart:end -->")]
    code = block.split("```python\n", 1)[1].rsplit("```", 1)[0]
    (tmp_path / "app.py").write_text(code)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "[shop-1] to ada@example.com: Thanks! (attempt 1)" in run.stdout
    assert "completed=1" in run.stdout
    assert not (tmp_path / "jobs.db-wal").exists()  # the quickstart closes its database

    def counts() -> tuple[int, int, int]:
        result = CliRunner().invoke(app, ["inspect", "--db", f"sqlite:///{tmp_path}/jobs.db",
                                          "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        return data["ready"], data["scheduled"], data["topics"]["email:send"]["enqueued"]

    assert counts() == (0, 1, 2)
    # The worker command the quickstart names imports app.py: that must not place the order
    # (and enqueue its jobs) again.
    worker = subprocess.run(
        [sys.executable, "-m", "quick_queue.cli", "worker", "app:queue", "--drain"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert worker.returncode == 0, worker.stderr
    assert "drained: 0 completed" in worker.stderr and "Thanks!" not in worker.stdout
    assert counts() == (0, 1, 2)


def test_readme_is_for_users_and_links_the_docs() -> None:
    """Benchmarks, peer figures and design notes live in docs/; the README needs nothing
    outside the repository."""
    text = README.read_text()
    assert "../shared" not in text and "missed" not in text
    for doc in ("docs/design.md", "docs/benchmarks.md"):
        assert doc in text and (ROOT / doc).exists(), doc
    assert "../shared" not in (ROOT / "docs" / "design.md").read_text()


def test_readme_layout_names_every_module() -> None:
    layout = README.read_text().split("## Layout", 1)[1]
    package = ROOT / "quick_queue"
    names = {p.stem for p in package.glob("*.py")} | {
        p.stem for p in (package / "consumer").glob("*.py")}
    missing = sorted(n for n in names - {"__init__"} if f"`{n}" not in layout
                     and f"{n}.py`" not in layout and f"/{n}.py" not in layout)
    assert not missing, f"README.md's layout table does not mention {missing}"
