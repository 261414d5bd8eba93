"""Step 5: a job snoozes until the milk arrives (no retry spent)."""

from __future__ import annotations

from tutorial import kit
from tutorial.shop import Order, db, order_of, place_order, queue, reset, restock


def main() -> None:
    kit.heading("Step 5: no oat milk yet, so the brew snoozes")
    reset("harbor")
    kit.say("Harbor is out of oat milk. Brew returns qq.Snooze(0.5) until it is in stock:\n"
            "the job comes back every half second without spending a retry.")
    jobs = place_order(db, "harbor", Order(id="H-1", customer="Hal", drink="oat latte",
                                           milk="oat"))
    brew_id = jobs["brew"]

    def snoozed_twice() -> bool:
        job = queue.get_job("harbor", brew_id)
        return job is not None and job.snoozes >= 2

    kit.work_until(snoozed_twice)
    kit.cli("inspect", "job", "harbor", brew_id)
    info = queue.get_job("harbor", brew_id)
    assert info is not None
    kit.check(info.snoozes >= 2 and info.attempt == 0,
              f"snoozed {info.snoozes} times, attempts spent: {info.attempt}")

    kit.say("\nThe milk truck arrives.")
    restock("harbor", "oat")
    kit.work_until(lambda: order_of("harbor", "H-1")["status"] == "ready")
    kit.check(order_of("harbor", "H-1")["brew_attempt"] == 1,
              "the oat latte was brewed on its first real attempt")


if __name__ == "__main__":
    kit.run_step(main)
