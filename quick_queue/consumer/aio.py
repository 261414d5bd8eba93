"""Async handlers (``async def perform``): one event loop per consumer, in its own thread,
running as many handler tasks at once as the consumer's free slots allow.

A worker thread starts the run (``WorkerPool._begin``: the slot, the STARTED event, the
deadline), hands it here and goes back for the next job, so async jobs cost no thread each.
From then on the run lives on the loop: the handler is awaited, its return value turned into
an outcome for the settler, and the slot freed when the task has really ended (``on_end``).

Leases, timeouts, cancellation and shutdown are the same as for threads, driven by the same
flags: the keeper extends the lease, sets ``meta.lease_lost`` and marks a timed-out run
``abandoned``; shutdown past ``shutdown_grace`` does the same and releases the lease. Where a
thread can only be asked to stop (``meta.lease_lost``), a task is *cancelled*: a watcher on
the loop cancels (``task.cancel()``) every task whose run is abandoned or whose lease is lost,
so the handler sees ``CancelledError`` at its current ``await``. Its outcome was already
decided (a timeout is a failed attempt, a shutdown a release) or is refused at settle (a lost
lease): the cancellation only frees the slot, once the task actually ends.

A handler that blocks the loop (``time.sleep``, a blocking client) stalls every async job of
this consumer: blocking work belongs in a plain ``def perform``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from quick_queue.consumer.executor import await_handler, to_outcome
from quick_queue.consumer.inflight import Running
from quick_queue.consumer.settler import Settler
from quick_queue.context import QueueContext
from quick_queue.jobs import Error

log = logging.getLogger("quick_queue.worker")
THREAD_NAME = "quick_queue-async"
WATCH_EVERY = 0.05  # seconds between looks for tasks to cancel, while any task runs
CLOSE_WAIT = 2.0  # seconds close() lets cancelled tasks end before it stops the loop


class AsyncRunner:
    """The consumer's event loop and its handler tasks. ``submit`` may be called from any
    thread; everything else that touches tasks runs on the loop."""

    def __init__(
        self, context: QueueContext, settler: Settler, on_end: Callable[[Running], None]
    ) -> None:
        self.context = context
        self.settler = settler
        self.on_end = on_end  # frees the run's slot; called on the loop when its task ends
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)
        self._tasks: dict[asyncio.Task[None], Running] = {}  # loop thread only
        self._cancelled: set[asyncio.Task[None]] = set()
        self._watching = False

    def start(self) -> None:
        self.thread.start()

    def submit(self, running: Running) -> None:
        """Run ``running``'s (already begun) handler on the loop."""
        self.loop.call_soon_threadsafe(self._spawn, running)

    def close(self) -> None:
        """Cancel what still runs, give it ``CLOSE_WAIT`` seconds to end, stop the loop."""
        if not self.thread.is_alive():
            return
        done = asyncio.run_coroutine_threadsafe(self._cancel_all(), self.loop)
        try:
            done.result(CLOSE_WAIT + 1)
        except Exception:  # noqa: BLE001 - a task deaf to cancellation: the thread is a daemon
            log.warning("async handlers still running at shutdown were left behind")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(CLOSE_WAIT)

    # -- on the loop --------------------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            if not any(not t.done() for t in self._tasks):
                self.loop.close()

    def _spawn(self, running: Running) -> None:
        task = self.loop.create_task(self._run(running))
        self._tasks[task] = running
        task.add_done_callback(self._ended)
        if not self._watching:
            self._watching = True
            self.loop.call_later(WATCH_EVERY, self._watch)

    async def _run(self, running: Running) -> None:
        result = await await_handler(running)
        if self._decided(running):
            return
        context = self.context
        outcome = to_outcome(
            running, result, context.db.store_time(), context.settings, context.rng
        )
        self.settler.submit(running, outcome)

    def _ended(self, task: asyncio.Task[None]) -> None:
        running = self._tasks.pop(task)
        self._cancelled.discard(task)
        try:
            if (task.cancelled() or task.exception() is not None) and not self._decided(running):
                # Cancelled before the handler began, or no outcome could be made (not the
                # handler's errors: await_handler returns those). The run still needs an
                # outcome to leave the in-flight table (ignored if one went out first).
                why = "cancelled before it ran" if task.cancelled() else repr(task.exception())
                context = self.context
                self.settler.submit(running, to_outcome(
                    running, Error(f"async run ended without a result: {why}"),
                    context.db.store_time(), context.settings, context.rng))
        finally:
            self.on_end(running)

    def _decided(self, running: Running) -> bool:
        """An abandoned run's outcome is whoever abandoned it's to give (the keeper's timeout,
        shutdown's release): the cancellation it caused must not race it with another."""
        with self.settler.inflight.cond:
            return running.abandoned

    def _watch(self) -> None:
        """Cancel the tasks whose run is abandoned (timed out, shut down) or whose lease is
        lost; look again in ``WATCH_EVERY`` seconds while any task runs."""
        for task, running in self._tasks.items():
            if task not in self._cancelled and (
                running.abandoned or running.meta.lease_lost.is_set()
            ):
                self._cancelled.add(task)
                task.cancel()
        if self._tasks:
            self.loop.call_later(WATCH_EVERY, self._watch)
        else:
            self._watching = False

    async def _cancel_all(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_WAIT)
