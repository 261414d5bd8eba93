"""``after=`` of ``enqueue`` and of ``enqueue_many``'s items, checked before any transaction
(``quick_queue.core.dependencies`` writes what it means): the jobs a new job waits for, as
(tenant, job id) pairs. In an ``enqueue_many`` item an int ``i`` names the job of the batch's
item ``i`` (an earlier one: its id is made before the transaction, so the child can name it).
"""

from __future__ import annotations

from collections.abc import Sequence

from quick_queue.core.enqueue import NewJob
from quick_queue.errors import InvalidArgument

# What an enqueue_many item waits for: its parents (tenant, job id) and on_parent_failure.
Wait = tuple[list[tuple[str, str]], str]
MAX_PARENTS = 1000  # jobs one job may wait for (enqueue's after=)


def check_rule(rule: object) -> None:
    """Refuse an ``on_parent_failure`` that is neither rule (also without ``after=``, where it
    does nothing: a misspelt rule is a mistake either way)."""
    if rule not in ("dead", "run"):
        raise InvalidArgument(
            f'on_parent_failure is "dead" (the job becomes a dead letter when a job it waits '
            f'for dies) or "run" (it runs anyway), not {rule!r}')


def parents_of(
    tenant: str, after: object, rule: object, earlier: Sequence[NewJob] | None = None,
) -> list[tuple[str, str]]:
    """``enqueue``'s ``after=`` as (tenant, job id) pairs: a job id is of ``tenant``, a
    ``(tenant, job_id)`` pair of another tenant; ``rule`` is ``on_parent_failure``. In an
    ``enqueue_many`` item, ``earlier`` holds the batch's items before it, and an int ``i``
    names the job of item ``i``."""
    check_rule(rule)
    if isinstance(after, str | bytes) or not isinstance(after, list | tuple | set | frozenset):
        raise InvalidArgument(
            f"after= takes a list of job ids (or (tenant, job_id) pairs), not {after!r:.80}")
    refs: list[tuple[str, str]] = []
    for item in after:
        if earlier is not None and type(item) is int:
            ref: object = _earlier(item, earlier)
        else:
            ref = (tenant, item) if isinstance(item, str) else item
        if not (isinstance(ref, tuple | list) and len(ref) == 2
                and all(isinstance(x, str) and x for x in ref)):
            also = "" if earlier is None else ", or the index of an earlier item of the batch"
            raise InvalidArgument(
                f"after= holds job ids (non-empty strings) or (tenant, job_id) pairs{also}, "
                f"not {item!r:.80}")
        refs.append((ref[0], ref[1]))
    if len(refs) > MAX_PARENTS:
        raise InvalidArgument(f"a job may wait for at most {MAX_PARENTS} jobs, not {len(refs)}")
    return list(dict.fromkeys(refs))


def _earlier(index: int, earlier: Sequence[NewJob]) -> tuple[str, str]:
    """The (tenant, job id) of item ``index`` of an ``enqueue_many`` (``after=[0]``)."""
    if not 0 <= index < len(earlier):
        before = f"0 to {len(earlier) - 1}" if earlier else "none: it is the first"
        raise InvalidArgument(
            f"after= index {index} names no earlier item of the batch (an item may wait for "
            f"items before it only; here {before})")
    job = earlier[index]
    return job.tenant, job.job_id
