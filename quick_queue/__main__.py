"""The ``quick-queue`` console script (also ``python -m quick_queue``).

The CLI's imports (the CLI framework, the engine, the queue) take about a quarter of a second;
a Ctrl-C meanwhile ends as one anywhere else in the CLI does (one ``interrupted`` line, status
130), not with Python's traceback. That is why this module imports them itself, inside the
guard, and why ``quick_queue/__init__`` imports nothing up front (else the package import,
which runs before any code of this module, would be the unguarded part)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    try:
        from quick_queue.cli import main as run_cli
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    run_cli(argv)


if __name__ == "__main__":
    main()
