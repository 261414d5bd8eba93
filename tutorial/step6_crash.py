"""Step 6: a worker dies mid-job; the job's lease expires and another worker runs it."""

from __future__ import annotations

import time

from tutorial import kit
from tutorial.shop import db, key, queue, read_json


def main() -> None:
    kit.heading("Step 6: the worker is killed mid-roast; the job comes back")
    kit.say("A roast takes 1.5 s. We start a real worker process, kill it (SIGKILL: no\n"
            "goodbye) while it roasts, and watch the lease run out (item_lease=2 s here;\n"
            "30 s by default). Nothing was lost: the next worker roasts the batch again.")
    roast_id = queue.enqueue("downtown", "roast", {"batch": "R-7"})
    first = kit.Worker("worker 1", "--concurrency", "2")
    first.wait_for(f"start roast downtown/{roast_id}")
    time.sleep(0.3)
    first.kill()
    kit.say("  (worker 1 killed with SIGKILL mid-roast)")
    info = queue.get_job("downtown", roast_id)
    assert info is not None
    kit.check(info.state == "leased" and info.attempt == 1,
              "the roast is still leased to the dead worker (attempt 1)")

    def lease_over() -> bool:
        job = queue.get_job("downtown", roast_id)
        return job is not None and job.lease_expires_at is not None and \
            job.lease_expires_at.timestamp() < db.store_time()  # leases are in the store's time

    kit.wait(lease_over, timeout=10, what="the lease to run out")
    kit.cli("inspect")
    second = kit.Worker("worker 2", "--drain")
    kit.check(second.wait() == 0, "worker 2 drained the queue and exited")
    roasted = db.transact(lambda tr: read_json(tr, key("roast", "downtown", "R-7")))
    kit.check(roasted == {"attempt": 2} and queue.get_job("downtown", roast_id) is None,
              "batch R-7 was roasted by worker 2, on attempt 2")


if __name__ == "__main__":
    kit.run_step(main)
