"""Step 2: a worker runs the jobs: a chained job, exactly-once points, a flaky payment retried
with backoff, and a receipt that waits for its time."""

from __future__ import annotations

from typing import Any

from tutorial import kit
from tutorial.shop import RECEIPT_DELAY, db, key, order_of, outbox, points_of, read_json


def main() -> None:
    kit.heading("Step 2: the worker brews, charges (with retries) and sends the receipt")
    kit.say("Each line is one job state change, as `quick-queue worker` logs them. The card\n"
            "processor times out twice on Ada's card: payment.charge is retried after ~0.3 s,\n"
            "then ~0.6 s (exponential backoff with jitter) and succeeds on attempt 3.")

    def payment() -> Any:
        return db.transact(lambda tr: read_json(tr, key("payment", "downtown", "A-1")))

    kit.work_until(lambda: payment() and outbox("downtown", "A-1", "receipt"), timeout=20)
    order = order_of("downtown", "A-1")
    paid = payment()
    receipt = outbox("downtown", "A-1", "receipt")
    assert paid is not None
    kit.say()
    message = outbox("downtown", "A-1", "ready")
    kit.check(order["status"] == "ready" and message,
              f"A-1 brewed, and the notify job it enqueued said: {message!r}")
    kit.check(paid["attempts"] == 3, "the payment succeeded on attempt 3 after two timeouts")
    kit.check(points_of("downtown", "Ada") == 10,
              "Ada has 10 loyalty points: added in the same transaction that completed the job")
    waited = receipt["sent_at"] - order["placed_at"]
    kit.check(waited >= RECEIPT_DELAY,
              f"the receipt went out {waited:.1f} s after the order (scheduled for "
              f"{RECEIPT_DELAY:g} s later)")


if __name__ == "__main__":
    kit.run_step(main)
