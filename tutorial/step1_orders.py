"""Step 1: placing an order writes the order and enqueues its jobs in one transaction."""

from __future__ import annotations

from tutorial import kit
from tutorial.shop import (
    BLOCKED_CARD,
    FLAKY_CARD,
    CardBlocked,
    Order,
    db,
    order_of,
    place_order,
    reset,
)


def main() -> None:
    kit.heading("Step 1: an order and its jobs commit together")
    reset("downtown")  # a clean shop, also on a used coffee.db
    kit.say("Ada orders a latte at the downtown shop. place_order() writes the order and "
            "enqueues\nbrew, payment.charge, loyalty and a receipt (due in 3 s) in ONE "
            "transaction.")
    place_order(db, "downtown", Order(id="A-1", customer="Ada", drink="latte",
                                      card=FLAKY_CARD))
    kit.check(order_of("downtown", "A-1")["status"] == "placed", "order A-1 is stored")

    kit.say("\nBob's card is blocked. The till raises after the jobs were enqueued, so the "
            "whole\ntransaction rolls back: no order, no jobs.")
    try:
        place_order(db, "downtown", Order(id="B-1", customer="Bob", drink="espresso",
                                          card=BLOCKED_CARD))
    except CardBlocked as error:
        kit.say(f"  place_order raised CardBlocked: {error}")
    kit.check(order_of("downtown", "B-1") is None, "order B-1 was never stored")

    result = kit.cli("inspect", "zone", "downtown")
    kit.check("B-1" not in result.stdout and "ready 3" in result.stdout
              and "scheduled 1" in result.stdout,
              "downtown holds Ada's 3 jobs ready and her receipt scheduled; none of Bob's")


if __name__ == "__main__":
    kit.run_step(main)
