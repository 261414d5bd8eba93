"""Step 4: a job that keeps failing lands in the dead letters; fix the cause, retry it from the
CLI."""

from __future__ import annotations

from tutorial import kit
from tutorial.shop import Order, db, outbox, place_order, queue, set_printer


def main() -> None:
    kit.heading("Step 4: a broken job goes to the dead letters, and comes back")
    kit.say("The downtown label printer is jammed. Gus orders a to-go flat white, so its order\n"
            "also enqueues label.print (max_retries=2): three attempts, then a dead letter.")
    set_printer("downtown", "jammed")
    place_order(db, "downtown", Order(id="G-1", customer="Gus", drink="flat white", to_go=True))
    dead = kit.work_until(lambda: queue.dead_letters("downtown"), timeout=20)
    job = dead[0]
    kit.check(job.topic == "label.print" and job.dead_kind == "failed",
              "label.print is a dead letter after 3 attempts; the worker kept going")
    kit.cli("inspect", "dead")

    kit.say("\nA barista clears the jam. The dead letter is retried from the shell:")
    set_printer("downtown", "ok")
    kit.cli("retry", "downtown", job.job_id)
    kit.work_until(lambda: outbox("downtown", "G-1", "label"))
    kit.check(outbox("downtown", "G-1", "label") == "Gus" and not queue.dead_letters(),
              "the label printed on the retry; no dead letters left")


if __name__ == "__main__":
    kit.run_step(main)
