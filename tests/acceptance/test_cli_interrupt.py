"""Ctrl-C at chosen moments of a CLI command's life: each ends with status 130 and the one line
``interrupted``, and leaves the store usable. The moment is chosen deterministically: the command
runs in a process that sends itself SIGINT at the first call (or return) of a named function or
at an audit event (``sys.addaudithook``), so no test depends on when a signal happens to land.

A Ctrl-C while the CLI's modules are imported (about a quarter of a second) is covered too, through
the console script's own entry point (``quick_queue.__main__``). Not covered: one while the
interpreter itself starts, before that entry point runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import quick_queue as qq

ROOT = Path(__file__).resolve().parents[2]

#: argv: WHEN NAME then the CLI's arguments. WHEN is ``call`` or ``return`` (of the function
#: whose module and qualified name are NAME) or ``audit`` (NAME is the event). SIGINT is set as a
#: terminal's foreground command has it (Python's KeyboardInterrupt, unblocked), whatever the
#: test runner's; the trigger is armed after the CLI is imported, as the console script does.
SELF_INTERRUPTING = """
import os, signal, sys
when, name = sys.argv[1:3]
del sys.argv[1:3]
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
signal.signal(signal.SIGINT, signal.default_int_handler)
from quick_queue.cli import main
fired = []
def fire():
    if not fired:
        fired.append(True)
        print("firing", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGINT)
def on_audit(event, args):
    if event == name:
        fire()
def on_profile(frame, event, arg):
    if event == when and f"{frame.f_globals.get('__name__')}.{frame.f_code.co_qualname}" == name:
        sys.setprofile(None)
        fire()
if when == "audit":
    sys.addaudithook(on_audit)
else:
    sys.setprofile(on_profile)
main()
"""


#: argv: MODULE then the CLI's arguments: the console script's code (``quick_queue.__main__``),
#: interrupted when MODULE starts to be imported, as a Ctrl-C typed right after the command.
INTERRUPTED_WHILE_IMPORTING = """
import os, signal, sys
module = sys.argv.pop(1)
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
signal.signal(signal.SIGINT, signal.default_int_handler)
from quick_queue.__main__ import main
assert "quick_queue.cli" not in sys.modules and module not in sys.modules
fired = []
def on_audit(event, args):
    if event == "import" and args[0] == module and not fired:
        fired.append(True)
        print("firing", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGINT)
sys.addaudithook(on_audit)
main()
"""


def run(url: str, when: str, name: str, *args: str,
        stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, QUICK_QUEUE_URL=url)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("QUICK_QUEUE_DEBUG", None)
    return subprocess.run([sys.executable, "-c", SELF_INTERRUPTING, when, name, *args],
                          env=env, input=stdin, capture_output=True, text=True, timeout=60)


def cli(url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quick_queue.cli", *args, "--db", url],
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), input=stdin,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("module", ["typer", "quick_queue.queue"])
def test_ctrl_c_while_the_cli_is_imported(url: str, module: str) -> None:
    env = dict(os.environ, QUICK_QUEUE_URL=url, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_WHILE_IMPORTING, module, "inspect"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.stderr.splitlines() == ["firing", "interrupted"], result.stderr
    assert result.returncode == 130


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/q.db"


ENQUEUE = ("enqueue", "hello", "--tenant", "acme", "--payload", "-")


@pytest.mark.parametrize(("when", "name"), [
    # before the command's own error reporting (the CLI framework alone: a bare 130 before)
    ("call", "quick_queue.cli.root"),
    ("call", "quick_queue.cli.enqueue"),
    ("call", "quick_queue.cli_support.read_payload_text"),  # reading the payload
    ("audit", "sqlite3.connect"),  # opening the store
    ("audit", "fcntl.flock"),  # the store's wake-up folder and writer turn
    ("call", "quick_queue.kv.sqlite_transaction.SQLiteTransaction.commit"),
    ("call", "quick_queue.kv.sqlite_engine.SQLiteDatabase.close"),
    ("return", "quick_queue.cli.enqueue"),  # its work done and the id printed
], ids=lambda part: part.rpartition(".")[2])
def test_ctrl_c_at_any_moment_of_enqueue(url: str, when: str, name: str) -> None:
    result = run(url, when, name, *ENQUEUE, stdin='{"to": "a@b.c"}')
    assert result.stderr.splitlines() == ["firing", "interrupted"], result.stderr
    assert result.returncode == 130
    # the store is left usable: not locked, its writer turn let go
    after = cli(url, "enqueue", "hello", "--tenant", "acme")
    assert after.returncode == 0, after.stderr


def test_ctrl_c_while_a_read_command_opens_the_store(url: str) -> None:
    assert cli(url, "enqueue", "hello", "--tenant", "acme").returncode == 0
    result = run(url, "audit", "sqlite3.connect", "inspect", "zone", "acme")
    assert result.stderr.splitlines() == ["firing", "interrupted"], result.stderr
    assert result.returncode == 130
    assert result.stdout == ""


def test_ctrl_c_at_purge_s_question_is_an_interruption_not_a_no(url: str) -> None:
    """The CLI framework turns a Ctrl-C at a prompt into the Abort of a "no" ("Aborted!", 1)."""
    assert cli(url, "enqueue", "nobody.handles.this", "--tenant", "acme").returncode == 0

    @qq.job(topic="other")
    class Other:
        def perform(self, payload: object, meta: qq.JobMeta) -> None:
            return None

    with qq.open(url) as db:
        qq.JobQueue(db, jobs=[Other]).drain()  # an unknown topic: dead on arrival
    result = run(url, "audit", "builtins.input", "purge")
    assert result.stderr.splitlines() == ["firing", "interrupted"], result.stderr
    assert result.returncode == 130
    no_answer = cli(url, "purge")
    assert (no_answer.returncode, no_answer.stderr.strip()) == (1, "Aborted!")
    assert '"dead": 1' in cli(url, "inspect", "--json").stdout
