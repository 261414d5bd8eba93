"""Step 7: a shop with a huge backlog does not starve a quiet one."""

from __future__ import annotations

import time

from tutorial import kit
from tutorial.shop import Order, db, order_of, orders_of, place_catering, place_order, queue, reset

BACKLOG = 2000


def main() -> None:
    kit.heading("Step 7: a stadium's 2,000 espressos do not starve the village")
    reset("stadium")
    reset("village")
    kit.say(f"The stadium shop orders {BACKLOG:,} espressos in one transaction; then one "
            "villager orders\na latte. In a single FIFO queue the latte would be brewed "
            f"last ({BACKLOG + 1:,}st). Here every\nshop has its own zone, and workers pick "
            "zones, not jobs.")
    place_catering(db, "stadium", BACKLOG)
    place_order(db, "village", Order(id="V-1", customer="Ivy", drink="latte"))
    kit.cli("inspect")
    started = time.monotonic()
    with kit.quiet_worker():
        summary = queue.drain(concurrency=4)
    took = time.monotonic() - started
    kit.say(f"\n  drained {summary.completed:,} jobs in {took:.1f} s")
    village = order_of("village", "V-1")["brewed_at"]
    stadium = orders_of("stadium")
    kit.check(len(stadium) == BACKLOG and all(o["status"] == "ready" for o in stadium),
              f"all {BACKLOG:,} stadium espressos were brewed")
    before = sum(1 for order in stadium if order["brewed_at"] < village)
    kit.check(before < 100, f"the village latte was brewed after {before} of the stadium's "
                            f"{BACKLOG:,} espressos")


if __name__ == "__main__":
    kit.run_step(main)
