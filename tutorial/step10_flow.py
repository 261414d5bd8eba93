"""Step 10: the PA system breaks (pause a topic), the shop calls closing time every second (a
periodic job), has only two espresso machines (a cap on a topic) and calls it a day only once
every customer was called (a job that waits for others): flow control kept in the store,
followed by every worker."""

from __future__ import annotations

from tutorial import kit
from tutorial.shop import (
    Order,
    db,
    order_of,
    orders_of,
    outbox,
    place_catering,
    place_order,
    queue,
    reset,
)

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
    two_machines()
    last_call()


def two_machines() -> None:
    kit.say("\nPier has two espresso machines: at most 2 brews at once, across every worker\n"
            "process and machine (slots held in the store, freed when a lease ends).")
    queue.set_max_running("brew", 2)
    try:
        place_catering(db, "pier", 6)
        kit.cli("inspect")
        kit.work_until(lambda: all(o["status"] == "ready" for o in orders_of("pier")
                                   if o["id"].startswith("C-")))
        kit.check(len([o for o in orders_of("pier") if o["id"].startswith("C-")]) == 6,
                  "all six espressos brewed, two machines at a time")
    finally:
        queue.set_max_running("brew", None)


def last_call() -> None:
    kit.say("\nThe barista goes home only once every customer was called: the last call\n"
            "waits for the three calls (enqueue(..., after=[job ids])).")
    calls = [queue.enqueue("pier", "notify", {"order_id": f"L-{n}", "text": f"call {n}"})
             for n in range(3)]
    last = queue.enqueue("pier", "notify", {"order_id": "last", "text": "Good night!"},
                         after=calls)
    info = queue.get_job("pier", last)
    kit.check(info is not None and info.state == "scheduled",
              "the last call waits (it shows as scheduled, far in the future)")
    kit.work_until(lambda: outbox("pier", "last", "ready"))
    kit.check(all(outbox("pier", f"L-{n}", "ready") for n in range(3)),
              "it went out once the three calls it waited for were done")


if __name__ == "__main__":
    kit.run_step(main)
