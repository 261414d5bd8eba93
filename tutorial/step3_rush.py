"""Step 3: rush orders jump the line (priority)."""

from __future__ import annotations

from tutorial import kit
from tutorial.shop import Order, db, order_of, place_order, reset


def main() -> None:
    kit.heading("Step 3: a rush order is brewed first")
    reset("uptown")
    kit.say("Uptown takes three orders, then a rush order (priority 10; the default is 100,\n"
            "lower runs first). One barista (concurrency=1) works through them.")
    for n, name in enumerate(("Cleo", "Dev", "Eve"), 1):
        place_order(db, "uptown", Order(id=f"U-{n}", customer=name, drink="cappuccino"))
    place_order(db, "uptown", Order(id="U-RUSH", customer="Fay", drink="espresso", rush=True))
    with kit.quiet_worker():
        kit.work_until(lambda: order_of("uptown", "U-3")["status"] == "ready", concurrency=1)
    brewed = sorted(["U-1", "U-2", "U-3", "U-RUSH"],
                    key=lambda order_id: order_of("uptown", order_id)["brewed_at"])
    kit.say(f"  brewed in this order: {', '.join(brewed)}")
    kit.check(brewed[0] == "U-RUSH", "the rush order was brewed first, though placed last")


if __name__ == "__main__":
    kit.run_step(main)
