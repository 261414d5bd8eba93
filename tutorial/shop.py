"""The coffee shop: its data, its queue and its job handlers.

Every shop is a *tenant*: it gets its own queue zone, so a shop drowning in orders cannot starve
a quiet one. The shop's own data (orders, loyalty points, the outbox, stock) lives in the same
database as the queue, under an ``("shop", ...)`` subspace of tuple-encoded keys, so an order and
its jobs commit together or not at all.

Run a worker for it from the repository root::

    QUICK_QUEUE_URL=sqlite:///coffee.db quick-queue worker tutorial.shop:queue
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import quick_queue as qq
from quick_queue import read_model
from quick_queue.keys import pack

#: The database: ``QUICK_QUEUE_URL`` (the CLI's variable too), else ./coffee.db (made absolute,
#: so the CLI and worker processes the steps start, from the repository root, share it).
DB_URL = os.environ.get("QUICK_QUEUE_URL") or f"sqlite:///{Path('coffee.db').resolve()}"

#: A real shop would send the receipt after 10 minutes; the tutorial waits 3 seconds.
RECEIPT_DELAY = 3.0
#: Stripe-style test card numbers: one whose processor times out twice, one that is blocked.
FLAKY_CARD = "4000-0000-0000-0119"
BLOCKED_CARD = "4000-0000-0000-0002"
MENU = {"espresso": 3.0, "latte": 4.5, "flat white": 4.2, "oat latte": 5.0, "cappuccino": 4.0}

db = qq.open(DB_URL)
# item_lease=2: a job whose worker dies comes back after 2 s (the default is 30 s). Running jobs
# keep their lease: the worker extends it every item_lease / 3 seconds.
queue = qq.JobQueue(db, item_lease=2.0)


# -- the shop's own data -------------------------------------------------------------------------
def key(*parts: str) -> bytes:
    """A key in the shop's subspace, e.g. ``key("order", "downtown", "A-1")``."""
    return pack(("shop", *parts))


class Order(BaseModel):
    id: str
    customer: str
    drink: str
    milk: str | None = None  # "oat" must be in stock before it can be brewed
    rush: bool = False
    to_go: bool = False  # to-go cups get a printed label
    card: str = "4242-4242-4242-4242"


class CardBlocked(Exception):
    pass


def read_json(tr: qq.Transaction, k: bytes) -> Any:
    raw = tr.get(k)
    return json.loads(raw) if raw is not None else None


def write_json(tr: qq.Transaction, k: bytes, value: Any) -> None:
    tr.set(k, json.dumps(value).encode())


@qq.transactional
def place_order(tr: qq.Transaction, shop: str, order: Order) -> dict[str, str]:
    """Write the order and enqueue its jobs in ONE transaction: all of it commits, or none.
    Returns the job ids by topic."""
    if order.drink not in MENU:
        raise ValueError(f"{order.drink!r} is not on the menu")
    write_json(tr, key("order", shop, order.id),
               {**order.model_dump(), "status": "placed", "placed_at": time.time()})
    ref = {"order_id": order.id}
    # key=...: an idempotent enqueue, so a retried transaction can never add a job twice
    jobs = {
        "brew": queue.enqueue(shop, "brew", {**ref, "drink": order.drink, "milk": order.milk},
                              tr=tr, priority=10 if order.rush else None,
                              key=f"{order.id}/brew"),
        "payment.charge": queue.enqueue(shop, "payment.charge",
                                        {**ref, "card": order.card, "amount": MENU[order.drink]},
                                        tr=tr, key=f"{order.id}/pay"),
        "loyalty": queue.enqueue(shop, "loyalty", {"customer": order.customer, "points": 10},
                                 tr=tr, key=f"{order.id}/points"),
        "receipt": queue.enqueue(shop, "receipt", ref, tr=tr, in_=RECEIPT_DELAY,
                                 key=f"{order.id}/receipt"),
    }
    if order.to_go:
        jobs["label.print"] = queue.enqueue(shop, "label.print",
                                            {**ref, "customer": order.customer}, tr=tr,
                                            key=f"{order.id}/label")
    # The till checks the card last. A blocked card raises, and the order *and* its jobs
    # above vanish with the transaction.
    if order.card == BLOCKED_CARD:
        raise CardBlocked(f"card {order.card} is blocked")
    return jobs


@qq.transactional
def place_catering(tr: qq.Transaction, shop: str, count: int) -> None:
    """A stadium orders ``count`` espressos: every order and every brew job in one commit."""
    now = time.time()
    jobs = []
    for i in range(count):
        order_id = f"C-{i:05d}"
        write_json(tr, key("order", shop, order_id),
                   {"id": order_id, "drink": "espresso", "status": "placed", "placed_at": now})
        jobs.append({"tenant": shop, "topic": "brew",
                     "payload": {"order_id": order_id, "drink": "espresso"}})
    queue.enqueue_many(jobs, tr=tr)


#: Everything the shop keeps per shop, under ``key(kind, shop, ...)``.
SHOP_DATA = ("order", "outbox", "payment", "points", "stock", "printer", "roast")


def reset(shop: str) -> None:
    """Forget ``shop``: its data, its waiting and running jobs and its dead letters. Each
    tutorial step starts this way, so a step runs the same on a used coffee.db."""

    def clear(tr: qq.Transaction) -> None:
        for kind in SHOP_DATA:
            prefix = key(kind, shop)
            tr.clear_range(prefix, prefix + b"\xff")

    db.transact(clear)
    while True:
        jobs = [job for page in read_model.zone_jobs(queue, shop, limit=500).values()
                for job in page]
        for job in jobs:
            queue.cancel(shop, job.job_id)
        if not jobs:
            break
    queue.purge_dead(shop)


def restock(shop: str, item: str) -> None:
    db.transact(lambda tr: tr.set(key("stock", shop, item), b"1"))


def set_printer(shop: str, state: str) -> None:
    db.transact(lambda tr: tr.set(key("printer", shop), state.encode()))


def order_of(shop: str, order_id: str) -> Any:
    return db.transact(lambda tr: read_json(tr, key("order", shop, order_id)))


def orders_of(shop: str) -> list[Any]:
    """Every order of ``shop`` (one range read)."""
    prefix = key("order", shop)
    rows = db.transact(lambda tr: tr.get_range(prefix, prefix + b"\xff"))
    return [json.loads(value) for _, value in rows]


def points_of(shop: str, customer: str) -> int:
    raw = db.transact(lambda tr: tr.get(key("points", shop, customer)))
    return int(struct.unpack("<q", raw)[0]) if raw else 0


def outbox(shop: str, order_id: str, kind: str) -> Any:
    return db.transact(lambda tr: read_json(tr, key("outbox", shop, order_id, kind)))


# -- the job handlers ---------------------------------------------------------------------------
@queue.job(topic="brew", transactional=True, max_retries=5)
class Brew:
    """Brew the drink. transactional=True: the order's new status, the chained "notify" job and
    the job's completion commit in one transaction, so this runs exactly once."""

    class Payload(BaseModel):
        order_id: str
        drink: str
        milk: str | None = None

    def perform(self, payload: Brew.Payload, meta: qq.JobMeta) -> qq.Snooze | None:
        tr = meta.tr
        assert tr is not None
        if payload.milk and tr.get(key("stock", meta.tenant, payload.milk)) is None:
            return qq.Snooze(0.5)  # no oat milk yet: look again in half a second, no retry spent
        order = read_json(tr, key("order", meta.tenant, payload.order_id)) or {}
        order.update(status="ready", brewed_at=time.time(), brew_attempt=meta.attempt)
        write_json(tr, key("order", meta.tenant, payload.order_id), order)
        if order.get("customer"):
            queue.enqueue(meta.tenant, "notify", {"order_id": payload.order_id,
                                                  "text": f"{payload.drink} for "
                                                          f"{order['customer']} is ready!"},
                          tr=tr)
        return None


@queue.job(topic="notify")
class Notify:
    """Call the customer's name (here: write the message to the shop's outbox)."""

    class Payload(BaseModel):
        order_id: str
        text: str

    def perform(self, payload: Notify.Payload, meta: qq.JobMeta) -> None:
        db.transact(lambda tr: write_json(tr, key("outbox", meta.tenant, payload.order_id,
                                                  "ready"), payload.text))


@queue.job(topic="loyalty", transactional=True)
class Loyalty:
    """Add points: an atomic add, in the same transaction as the job's completion."""

    class Payload(BaseModel):
        customer: str
        points: int

    def perform(self, payload: Loyalty.Payload, meta: qq.JobMeta) -> None:
        assert meta.tr is not None
        meta.tr.add(key("points", meta.tenant, payload.customer), struct.pack("<q", payload.points))


class GatewayTimeout(Exception):
    pass


@queue.job(topic="payment.charge", max_retries=4, backoff_base=0.3)
class ChargeCard:
    """Charge the card at the (flaky) processor: an outside call, so at-least-once; retried
    with exponential backoff (0.3 s, 0.6 s, ...) when it fails."""

    class Payload(BaseModel):
        order_id: str
        card: str
        amount: float

    def perform(self, payload: ChargeCard.Payload, meta: qq.JobMeta) -> None:
        if payload.card == FLAKY_CARD and meta.attempt < 3:
            raise GatewayTimeout("the card processor did not answer")
        db.transact(lambda tr: write_json(tr, key("payment", meta.tenant, payload.order_id),
                                          {"amount": payload.amount, "attempts": meta.attempt,
                                           "paid_at": time.time()}))


@queue.job(topic="receipt")
class Receipt:
    """Email the receipt (enqueued with in_=RECEIPT_DELAY when the order is placed)."""

    class Payload(BaseModel):
        order_id: str

    def perform(self, payload: Receipt.Payload, meta: qq.JobMeta) -> None:
        db.transact(lambda tr: write_json(tr, key("outbox", meta.tenant, payload.order_id,
                                                  "receipt"), {"sent_at": time.time()}))


class PrinterJam(Exception):
    pass


@queue.job(topic="label.print", max_retries=2, backoff_base=0.2)
class PrintLabel:
    """Print the to-go cup's label. A jammed printer fails every attempt: dead letter."""

    class Payload(BaseModel):
        order_id: str
        customer: str

    def perform(self, payload: PrintLabel.Payload, meta: qq.JobMeta) -> None:
        printer = db.transact(lambda tr: tr.get(key("printer", meta.tenant)))
        if printer == b"jammed":
            raise PrinterJam("label printer jammed")
        db.transact(lambda tr: write_json(tr, key("outbox", meta.tenant, payload.order_id,
                                                  "label"), payload.customer))


@queue.job(topic="roast", max_retries=3)
class Roast:
    """Roast a batch of beans: takes 1.5 s (long enough to pull the plug on its worker)."""

    class Payload(BaseModel):
        batch: str

    def perform(self, payload: Roast.Payload, meta: qq.JobMeta) -> None:
        time.sleep(1.5)
        db.transact(lambda tr: write_json(tr, key("roast", meta.tenant, payload.batch),
                                          {"attempt": meta.attempt}))


@queue.job(topic="till.total", keep_result=600)
class TillTotal:
    """Add up an order at the till. ``keep_result=600`` keeps what it returns for 10 minutes, so
    the till can wait for it with ``queue.result(...)``; a drink not on the menu is discarded,
    and the till hears so (``qq.JobDiscarded``). It is an ``async def perform``: it would ask a
    price service over the network, and a worker runs such handlers as tasks on its event loop,
    beside the plain ones in threads."""

    class Payload(BaseModel):
        order_id: str
        drinks: list[str]

    async def perform(
        self, payload: TillTotal.Payload, meta: qq.JobMeta
    ) -> dict[str, Any] | qq.Discard:
        await asyncio.sleep(0.01)  # stands in for the price service's answer
        unknown = [d for d in payload.drinks if d not in MENU]
        if unknown:
            return qq.Discard(f"not on the menu: {', '.join(unknown)}")
        return {"order_id": payload.order_id, "total": sum(MENU[d] for d in payload.drinks)}
