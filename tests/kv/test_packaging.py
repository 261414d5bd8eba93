"""quick_queue without the FoundationDB binding: ``foundationdb`` is an extra (``[fdb]``), so
``import quick_queue`` and the embedded engine must work where it is not installed, and an
``fdb://`` URL must say what to install."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# ``sys.modules["fdb"] = None`` makes every ``import fdb`` raise ImportError, as if the package
# were not installed at all.
_WITHOUT_FDB = """
import sys
sys.modules["fdb"] = None
import quick_queue
import quick_queue.keys
import quick_queue.kv as kv
from quick_queue.kv.errors import ClientLibraryMissing

with kv.open("sqlite:///" + sys.argv[1]) as db:
    db.transact(lambda tr: tr.set(b"k", b"v"))
    assert db.transact(lambda tr: tr.get(b"k")) == b"v"
try:
    kv.open("fdb://")
except ClientLibraryMissing as error:
    print(error)
else:
    raise SystemExit("fdb:// opened without the binding")
"""


def test_import_and_the_embedded_engine_need_no_fdb_package(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_FDB, str(tmp_path / "q.db")],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    message = result.stdout
    assert 'pip install "quick-queue[fdb]"' in message
    for pin in ('"foundationdb==7.1.*"', '"foundationdb==7.3.*"', '"foundationdb==8.0.*"'):
        assert pin in message


def test_foundationdb_is_an_extra_not_a_requirement() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("foundationdb")]
    assert [d for d in project["optional-dependencies"]["fdb"] if d.startswith("foundationdb")]
