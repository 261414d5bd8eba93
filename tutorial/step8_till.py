"""Step 8: the till waits for a job's result (kept results, ``queue.result``)."""

from __future__ import annotations

import threading

import quick_queue as qq
from tutorial import kit
from tutorial.shop import TillTotal, queue, reset


def main() -> None:
    kit.heading("Step 8: the till waits for the total")
    reset("corner")
    kit.say("The till enqueues a till.total job (typed: the handler class and its Payload) and\n"
            "waits for what it returns: @job(keep_result=600) keeps the result, and\n"
            "queue.result(..., wait=10) returns it once a worker has run the job. TillTotal\n"
            "is an async def perform: the worker runs it on its event loop.")
    job_id = queue.enqueue("corner", TillTotal,
                           TillTotal.Payload(order_id="C-1", drinks=["latte", "espresso"]))
    odd_id = queue.enqueue("corner", TillTotal,
                           TillTotal.Payload(order_id="C-2", drinks=["hot chocolate"]))
    # A worker elsewhere runs the jobs; here, a drain in a thread stands in for it.
    worker = threading.Thread(target=queue.drain)
    worker.start()
    total = queue.result("corner", job_id, wait=10)
    kit.check(total == {"order_id": "C-1", "total": 7.5}, f"the till got {total}")
    try:
        queue.result("corner", odd_id, wait=10)
    except qq.JobDiscarded as error:
        kit.check("hot chocolate" in str(error), f"the till was told: {error}")
    else:
        raise AssertionError("C-2 should have been discarded")
    worker.join(10)
    kit.cli("inspect", "job", "corner", job_id)
    info = queue.get_job("corner", job_id)
    assert info is not None
    kit.check(info.state == "completed" and info.result == total,
              f"get_job still shows it: {info.state}, result {info.result}")


if __name__ == "__main__":
    kit.run_step(main)
