"""The whole coffee-shop tutorial, end to end, on a fresh database; exits 0 only if every step
behaved as the tutorial says.

    python -m tutorial.demo                    # a fresh SQLite file in a temporary folder
    python -m tutorial.demo --db sqlite:///coffee.db   # keep the file to look at afterwards
    python -m tutorial.demo --db fdb:///etc/foundationdb/fdb.cluster   # on FoundationDB

On a server (fdb://) there is no fresh file to start from: the demo runs the queue named
"default" there, refuses to start unless that queue is empty, and removes what it made when it
ends, so it can run again.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

STEPS = [
    "step1_orders",
    "step2_worker",
    "step3_rush",
    "step4_dead_letters",
    "step5_snooze",
    "step6_crash",
    "step7_fairness",
    "step8_till",
    "step9_dashboard",
    "step10_flow",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="database URL (default: a new SQLite file in a temp dir)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    with tempfile.TemporaryDirectory(prefix="coffee-") as tmp:
        url = args.db or f"sqlite:///{tmp}/coffee.db"
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = "sqlite:///" + os.path.abspath(url[len("sqlite:///"):])  # for the subprocesses
        os.environ["QUICK_QUEUE_URL"] = url  # tutorial.shop opens it; so does the CLI
        from tutorial import kit

        kit.say(f"Coffee-shop demo on {url}")
        if url.startswith("fdb:"):
            busy = kit.queue_in_use(url)
            if busy:
                kit.say(f"DEMO NOT STARTED: {busy}")
                return 2
        try:
            return _run_steps()
        finally:
            if url.startswith("fdb:"):
                kit.remove_demo_queue(url)


def _run_steps() -> int:
    from tutorial import kit

    kit.show_worker_log()
    started = time.monotonic()
    for name in STEPS:
        step = importlib.import_module(f"tutorial.{name}")
        try:
            step.main()
        except AssertionError as error:
            kit.say(f"\nDEMO FAILED in {name}: {error}")
            return 1
    from tutorial.shop import db

    db.close()
    kit.say(f"\nAll {len(STEPS)} steps behaved as described "
            f"({time.monotonic() - started:.1f} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
