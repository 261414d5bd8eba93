"""Step 10: the PA system breaks (pause a topic) and the shop calls closing time every second
(a periodic job): flow control kept in the store, followed by every worker."""

from __future__ import annotations

from tutorial import kit
from tutorial.shop import Order, db, order_of, outbox, place_order, queue, reset

CLOSING = "pier-closing-call"


def main() -> None:
    kit.heading("Step 10: pause the announcements, then call closing time every second")
    reset("pier")
    queue.remove_periodic(CLOSING)  # a re-run on a used coffee.db starts clean
    kit.say("The PA system at Pier is broken: pause the notify topic on every worker.\n"
            "Paused jobs stay queued and spend no attempt; brewing goes on.")
    kit.cli("pause", "--topic", "notify")
    try:
        place_order(db, "pier", Order(id="P-1", customer="Pat", drink="latte"))
        kit.work_until(lambda: order_of("pier", "P-1")["status"] == "ready")
        queue.drain()
        kit.check(outbox("pier", "P-1", "ready") is None,
                  "the latte is ready, but nobody was called: notify is paused")
        kit.cli("inspect")
        kit.say("\nThe PA works again: resume the topic.")
    finally:
        kit.cli("resume", "--topic", "notify")
    kit.work_until(lambda: outbox("pier", "P-1", "ready"))
    kit.check(outbox("pier", "P-1", "ready") == "latte for Pat is ready!",
              "after resume the waiting call went out")

    kit.say("\nqueue.periodic(...) stores a schedule in the queue: every worker ticks it,\n"
            "and each tick is enqueued exactly once however many workers run.")
    queue.periodic(CLOSING, every=1, tenant="pier", topic="notify",
                   payload={"order_id": "closing", "text": "Closing time!"})
    try:
        kit.work_until(lambda: outbox("pier", "closing", "ready"))
    finally:
        queue.remove_periodic(CLOSING)
    kit.check(outbox("pier", "closing", "ready") == "Closing time!",
              "a tick of the schedule called closing time")


if __name__ == "__main__":
    kit.run_step(main)
