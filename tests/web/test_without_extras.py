"""Without the web (or otel) extra: ``import quick_queue`` and the CLI work, and the commands
that need the extra say how to install it in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Make the extra's packages unimportable in a child interpreter, as in an install without it.
BLOCK = ("import sys\n"
         "for name in ('fastapi', 'starlette', 'uvicorn', 'prometheus_client', 'opentelemetry'):\n"
         "    sys.modules[name] = None\n")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_the_package_and_the_cli_import_without_the_web_extra() -> None:
    done = _run("import quick_queue, quick_queue.cli, quick_queue.consumer.runner\n"
                "print('ok')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_dashboard_names_the_extra_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    done = _run(f"from quick_queue.cli import main\nmain(['dashboard', '--db', {url!r}])")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert 'pip install "quick-queue-zones[web]"' in done.stderr
