"""The embedded engine's group commit, and the background checkpoints its commits drive.

How a commit works, and why:

* Commits go through a *group commit*: the first committing thread of a process becomes the
  leader, takes every commit request queued meanwhile, and resolves and applies them all under
  one SQLite write transaction, so one fsync makes a whole batch durable. This is what
  FoundationDB's commit proxies do, and it is the only way past SQLite's ~5k fsynced commits/s.
* Resolution follows FoundationDB: in order, each request's read-conflict ranges are checked
  against the write ranges of every batch committed after its read version (``qq_log``, shared
  by all processes on the file) and against the requests accepted earlier in this batch. A hit
  is ``not_committed`` (1020). One batch gets one commit version; the versionstamp of a request
  is that version and its position in the batch, FoundationDB's 10-byte layout.
* ``qq_log`` keeps a few seconds of write ranges for other processes; each process mirrors the
  part it needs in memory (``ConflictHistory``). Every commit inserts its row there (the
  engine's commits are the only writers of ``kv``), so the newest row is the database version.
* A batch first asks SQLite whether another connection committed since the writer last looked
  (``PRAGMA data_version``), and if so reads the log's new rows. A writer that has been alone a
  while (``QUIET_BATCHES``) skips the question: its log row, numbered by SQLite as the newest
  plus one, shows whether anyone else committed, and such a batch is undone and made again.
* Checkpoints (copying the WAL back into the database file, with an fsync of it) run in a
  background thread instead of inside whichever commit crosses SQLite's threshold: that commit
  would otherwise wait several milliseconds (pick-up latency).
* But SQLite starts the WAL over from its beginning only when a writer finds every frame of it
  already copied, and under steady commits there is always a commit between the background
  checkpoint's end and the next writer. Measured (issue 10): the WAL then never restarted; it
  grew by ~9 kB per enqueue (71 MB after 8,000), and each fsync of a growing file also wrote its
  new size and blocks (2.0-2.3k enqueues/s, against 2.8-3.0k with a WAL that restarts). So when
  the background checkpoint finds the WAL long (``CATCH_UP_BYTES``), it asks the writer to
  catch up: right after its next COMMIT, still holding the write turn, the writer copies the
  few frames committed since (a fraction of a millisecond, once per a hundred commits or so),
  and the commit after it restarts the WAL at its beginning, in the blocks the file already has.

``GroupCommit`` is a mixin of ``SQLiteDatabase`` (``sqlite_engine``); the attributes it declares
are the engine state it reads and writes.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time

from quick_queue.kv.conflicts import (
    ConflictHistory,
    Range,
    WriteSet,
    decode_writes,
    encode_writes,
)
from quick_queue.kv.errors import (
    DATABASE_LOCKED,
    IO_ERROR,
    NOT_COMMITTED,
    PERMISSION_DENIED,
    TRANSACTION_TOO_OLD,
    KVError,
    StorageError,
)
from quick_queue.kv.sqlite_commit import (
    BLOB_COPY,
    BoundRows,
    Request,
    ValueCache,
    add_write_ranges,
    apply_batch,
    apply_request,
    bind_rows,
    storage_error,
)
from quick_queue.kv.sqlite_read_cache import ReadCache
from quick_queue.kv.sqlite_reads import Entry
from quick_queue.kv.sqlite_transaction import LIFETIME
from quick_queue.kv.sqlite_writer_turn import WriterTurn
from quick_queue.kv.wakeup import CommitSignal

# History kept for other processes: longer than a transaction may live, with room for clock skew.
LOG_SECONDS = LIFETIME * 2
#: Commits between background checkpoints under load. Each checkpoint that finds the WAL long
#: lets it restart (``CATCH_UP_BYTES``), and a WAL that restarts sooner stops growing sooner:
#: a commit that extends the WAL file pays for its new size and blocks in its fsync, one that
#: reuses blocks does not. Measured (issue 10, twelfth pass, 5,000 single enqueues on a new
#: store, 500 at a time): 3,700-3,900 a second while the WAL grew, 6,200-6,600 once it was
#: reused; at 1,000 commits (and 4 MB) the WAL grew to 24 MB over the first ~1,000 enqueues,
#: at 100 (and 2 MB) to 4 MB over ~170. Three rounds interleaved: 5,506, 4,982, 5,212 enqueues
#: a second against 5,844, 5,744, 6,064; drains, pick-up latency and 8 producer threads did not
#: move. Smaller (50 commits, 1 MB) was no faster: a catch-up's fsync comes every cycle.
CHECKPOINT_EVERY = 100
#: ... or keys written (each a WAL frame at worst) since the last one, whichever comes first.
#: A commit of an enqueue writes ~4 keys, but one of a worker's visits or settles ~250 (84
#: jobs), and between checkpoints counted in commits its WAL grew to 100 MB in a 20,000-job
#: drain, never restarting: each commit then appended to a growing file, whose fsync also
#: wrote its new size and blocks. Measured (issue 10, 20,000 no-op jobs over 1,000 tenants,
#: COMMIT statement CPU under the writer's turn, interleaved): 610-1,002 µs a commit,
#: 441-451 with a checkpoint every 20 commits; two worker processes 22.4-24.1k jobs/s
#: against 28.9-32.0k, the write turn held 2.7-3.2 ms a commit against 1.8-2.2.
CHECKPOINT_KEYS = 4096
# ... and at most this long between them otherwise. Each complete checkpoint makes the next
# commit of any process restart the WAL, which writes and fsyncs its header first: two fsyncs on
# that commit. Measured (issue 10, pick-up latency, a job every 20 ms, 2 processes): at 1 s,
# 9+2 of 400 enqueue and lease commits paid it; at 3 s 3+1; at 5 s none (but then 200-800
# commits/s would checkpoint by count, past CATCH_UP_BYTES).
CHECKPOINT_SECONDS = 3.0
#: WAL bytes past which the writer catches up after a background checkpoint (see the module
#: docstring). A catch-up adds a checkpoint's fsync of the database file to one commit, so it is
#: kept for a WAL that steady commits keep from restarting: an idle-paced workload (a job every
#: 20 ms, and the WAL restarts between jobs anyway) then never pays it on its pick-up path, while
#: steady enqueues (~24 kB a commit at 4 kB pages, ``CHECKPOINT_EVERY`` commits between
#: background checkpoints) catch up after each one, so the WAL file stays near 2.5-5 MB. In
#: bytes, not frames: 4,096 frames were 4 MB at the 1 kB pages stores had until the ninth pass
#: of issue 10, and 16 MB at 4 kB, where 1,000 enqueue-shaped commits stayed under it and the WAL
#: restarted only every second checkpoint. 2 MB since the twelfth pass: at 4 MB, 100
#: enqueue-shaped commits (~2.4 MB) stayed under it, and the WAL grew to 6 MB.
CATCH_UP_BYTES = 2 * 1024 * 1024
#: Batches in a row that found no other connection's commit (``PRAGMA data_version``) after
#: which this writer stops asking before each batch and lets the conflict log's row tell
#: (``_resolve_and_apply``). Measured (issue 10, callgrind, enqueue-shaped kv transactions):
#: not asking saves 10.5k instructions of a commit's ~190k; a batch that then finds another
#: commit is undone and made again, 434k against 318k asking. So a writer sharing the file
#: with a busy one keeps asking: another process committing between a tenth of its batches
#: makes 16 quiet ones in a row about once in 45 batches, and costs ~0.5k a batch overall.
QUIET_BATCHES = 16
#: The most requests one batch takes, with those that join it late (``_join_late``).
LATE_JOIN_MAX = 64


class _Moved(Exception):
    """Another connection committed since the writer last looked: the batch being applied was
    resolved without that commit's writes (``_resolve_and_apply``)."""


def catch_up_frames(page_size: int) -> int:
    """``CATCH_UP_BYTES`` in WAL frames of a store with pages of ``page_size`` bytes."""
    return max(1, CATCH_UP_BYTES // page_size)


class GroupCommit:
    """The commit path of ``SQLiteDatabase``: queue, lead a batch, resolve, apply, checkpoint."""

    path: str
    url: str
    read_only: bool
    synchronous: str
    _closed: bool
    _writer: sqlite3.Connection
    _writer_cursor: sqlite3.Cursor
    _signal: CommitSignal
    _history: ConflictHistory
    _writer_data_version: int
    _writer_level: str
    _seen: int
    _turn: WriterTurn

    def _init_group_commit(self) -> None:
        self._pending: list[Request] = []
        self._commit_lock = threading.Lock()  # guards _pending and _leading
        self._leading = False
        self._last_prune = 0.0
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_wake = threading.Event()
        self._commits_since_checkpoint = 0
        self._keys_since_checkpoint = 0  # keys written since (see CHECKPOINT_KEYS)
        # Set by the background checkpoint when the WAL is long; the writer then catches up.
        self._catch_up = False
        # The stored values of keys this process's atomic operations touched, as its last
        # commit left them: valid while no other connection has committed to the file (checked
        # at each batch, see _resolve_and_apply) and dropped whenever a batch fails. It saves the
        # read of the stored value per atomic operation (a stats counter in every enqueue:
        # measured 12 µs of CPU and one more interpreter-lock release for the leader).
        self._values: ValueCache = {}
        # Point values as of ``_seen``, served to first reads (see sqlite_read_cache); its lock
        # is held for every batch.
        self._read_cache = ReadCache()
        # Batches in a row that found no other connection's commit (see QUIET_BATCHES).
        self._quiet = 0
        self._last_batch = 1  # requests in the last batch (see _lead)

    def _connect(self) -> sqlite3.Connection:
        # Declared for the checkpointer's own connection; SQLiteDatabase overrides it.
        raise NotImplementedError

    def _commit(
        self,
        read_version: int | None,
        read_keys: set[bytes],
        read_spans: list[Range],
        writes: dict[bytes, Entry],
        cleared: list[Range],
        stamped: list[tuple[bytes, bytes]],
        extra_writes: list[Range],
        relaxed: bool = False,
    ) -> bytes:
        if self.read_only:
            raise StorageError(
                PERMISSION_DENIED,
                f"{self.path} was opened read-only: this transaction's writes were not "
                "committed (open it without read_only to write)",
                path=self.path,
            )
        request = Request(
            read_version, read_keys, read_spans, writes, cleared, stamped, extra_writes, relaxed
        )
        wake: threading.Lock | None = None
        # (acquire and release, not ``with``: a ``with`` makes two bound methods; the locks
        # of one commit cost ~3k instructions that way, and nothing in between can raise)
        commit_lock = self._commit_lock
        commit_lock.acquire()
        self._pending.append(request)
        lead = not self._leading
        if lead:
            self._leading = True
        else:
            wake = request.wake = threading.Lock()
            wake.acquire()
        commit_lock.release()
        if wake is not None:
            # Released by a leader once this request is done, or to make this thread lead
            # the next batch (its request is then the first pending one).
            wake.acquire()
            lead = not request.done
        if lead:
            self._lead()
        if request.error is not None:
            raise request.error
        assert request.stamp is not None
        return request.stamp

    def _lead(self) -> None:
        """Run a batch of every request queued so far (this thread's own among them), then
        hand the lead to the thread of the first request queued meanwhile, and wake the
        threads of this batch. Each waiting thread is woken once, by its own lock: measured
        (issue 10), waking every waiter of a condition after each batch woke the threads of
        the next batch too, for nothing, and they competed for the interpreter lock with
        the leader (8 producer threads: batches of ~4 requests, ~4 idle wake-ups each).

        When the last batch held several requests, the leader first lets go of the
        interpreter lock once (``time.sleep(0)``): the threads that batch woke are building
        their next transactions, and each one that finishes joins this batch instead of
        the next. A single producer's batches hold one request and never wait."""
        if self._last_batch > 1:
            time.sleep(0)
        commit_lock = self._commit_lock
        commit_lock.acquire()
        batch, self._pending = self._pending, []
        commit_lock.release()
        self._last_batch = len(batch)
        try:
            cache_lock = self._read_cache.lock
            cache_lock.acquire()
            try:
                self._run_batch(batch)
            finally:
                cache_lock.release()
        finally:
            commit_lock.acquire()
            following = self._pending[0] if self._pending else None
            if following is None:
                self._leading = False
            commit_lock.release()
            if following is not None and following.wake is not None:
                following.wake.release()  # first: the next batch's fsync starts sooner
            for request in batch:
                if request.wake is not None:
                    request.wake.release()

    def _sync_history(self, conn: sqlite3.Cursor) -> int:
        """Mirror the batches other processes committed since we last looked."""
        # data_version moves only when another connection committed: skip the query otherwise.
        data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        if data_version == self._writer_data_version:
            self._quiet += 1
            return self._seen
        self._quiet = 0
        self._writer_data_version = data_version
        self._values.clear()  # another connection committed: the values may have changed
        cache = self._read_cache
        rows = conn.execute(
            "SELECT version, at, ranges FROM qq_log WHERE version > ? ORDER BY version",
            (self._seen,),
        ).fetchall()
        # The newest row is the database version (pruning always keeps it), and this runs in
        # the batch's write transaction: no query of max(version) is needed besides this one.
        current = rows[-1][0] if rows else self._seen
        expected = self._seen + 1
        for version, at, blob in rows:
            if version != expected:
                self._history.note_gap(version - 1)
                cache.values.clear()
            try:
                writes = decode_writes(blob)
            except ValueError as error:  # a row of a newer format: a conflict would be missed
                raise StorageError(
                    IO_ERROR,
                    f"{self.path}: the conflict log has a row this version of quick_queue cannot "
                    f"read ({error}); was the file written by a newer version?",
                    path=self.path,
                ) from error
            self._history.append(version, at, writes)
            cache.forget_foreign(writes)
            expected = version + 1
        self._seen = current
        return current

    def _run_batch(self, batch: list[Request]) -> None:
        # One cursor of the writer's for every statement of every batch: ``execute`` on the
        # connection makes a cursor each time (measured ~1.1k instructions a statement).
        conn = self._writer_cursor
        try:
            if self._closed:
                raise KVError(2000, f"database {self.url} is closed")
            # A batch of relaxed commits only is not synced; the next durable batch syncs it.
            # (SQLite refuses to change the level inside a transaction: it is set first.)
            relaxed = batch[0].relaxed if len(batch) == 1 else all(r.relaxed for r in batch)
            level = "NORMAL" if relaxed else self.synchronous
            if self.synchronous == "FULL" and level != self._writer_level:
                conn.execute(f"PRAGMA synchronous={level}")
                self._writer_level = level
            rows = bind_rows(batch[0]) if len(batch) == 1 else None  # (before the turn)
            # Other processes' committers queue fairly for SQLite's lock (sqlite_writer_turn).
            self._turn.acquire()
            self._begin(conn)
            try:
                try:
                    self._resolve_and_apply(conn, batch, self._quiet >= QUIET_BATCHES, rows)
                except _Moved:
                    # Resolved without another connection's commit: undone, and made again
                    # after reading the log (still this writer's turn).
                    self._quiet = 0
                    self._values.clear()
                    conn.execute("ROLLBACK")
                    for request in batch:
                        request.error, request.done, request.stamp = None, False, None
                    self._begin(conn)
                    self._resolve_and_apply(conn, batch, False, rows)
            except BaseException:
                self._values.clear()  # the batch's writes may or may not have happened
                self._read_cache.values.clear()
                # ... and the next batch reads the log again, where they are if they happened.
                self._writer_data_version = -1
                self._quiet = 0
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except KVError as error:
            for request in batch:
                if not request.done:
                    request.error = error
                    request.done = True
        except sqlite3.Error as error:
            failure = storage_error(self.path, error, "committing")
            for request in batch:
                if not request.done:
                    request.error = failure
                    request.done = True
        finally:
            self._turn.release()
            for request in batch:
                if not request.done:  # an unexpected exception escaped: fail, never hang
                    request.error = KVError(4000, "commit aborted by an internal error")
                    request.done = True

    def _begin(self, conn: sqlite3.Cursor) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if "locked" in str(error) or "busy" in str(error):
                raise KVError(
                    DATABASE_LOCKED, f"{self.path} stayed locked by another process"
                ) from error
            raise storage_error(self.path, error, "committing") from error

    def _resolve_and_apply(
        self, conn: sqlite3.Cursor, batch: list[Request], optimistic: bool,
        rows: BoundRows | None = None,
    ) -> None:
        """Resolve ``batch`` against the history, apply what is accepted, commit. ``rows``:
        the writes of a batch of one request, bound before the write turn (``bind_rows``).

        ``optimistic``: without asking SQLite first whether another connection committed since
        the writer last looked (``PRAGMA data_version``: measured ~9.5k instructions, a tenth
        of an enqueue's commit). The conflict log's row answers instead: it is inserted
        without a version, so SQLite gives it the newest version plus one (every commit of
        any connection inserts one; the newest is never pruned), and that is this batch's
        version only if nobody else committed. Otherwise the batch was resolved, stamped and
        its atomic operations computed without that commit: ``_Moved`` before anything is
        committed (the caller rolls back and makes it again after reading the log).
        Rejections before that stand either way: a conflict with a known commit, a version
        too old, and (all rejected) no request accepted ahead of another."""
        current = self._seen if optimistic else self._sync_history(conn)
        version = current + 1
        accepted: list[Request] = []
        batch_writes = WriteSet()
        history = self._history
        self._resolve(batch, current, accepted, batch_writes)
        if not accepted:
            conn.execute("ROLLBACK")
            return
        now = time.time()
        head = version.to_bytes(8, "big")
        # (``rows`` are the first request's: a batch made again may have taken latecomers the
        # first time, and may now reject its first request)
        self._apply(conn, accepted, 0, head, batch_writes,
                    rows if accepted[0] is batch[0] else None)
        self._join_late(conn, batch, current, accepted, batch_writes, head)
        # This row is also the database version, so even a handle alone on the file writes it
        # (issue 10, measured: moving the version to a row of its own to skip this insert
        # when alone saved no instructions per commit and cost 5 % with two handles).
        blob = encode_writes(batch_writes)
        logged = conn.execute(
            "INSERT INTO qq_log (at, ranges) VALUES (?, ?)",
            (now, bytearray(blob) if len(blob) <= BLOB_COPY else blob),
        ).lastrowid
        if logged != version:
            if optimistic:
                raise _Moved
            # (after the log was read in this write transaction: only a row written outside
            # the engine's commits can do this)
            raise StorageError(
                IO_ERROR, f"{self.path}: the conflict log's newest version is not {current}",
                path=self.path,
            )
        if now - self._last_prune > 1.0:
            self._last_prune = now
            conn.execute(
                "DELETE FROM qq_log WHERE at < ? AND version < ?", (now - LOG_SECONDS, version)
            )
            history.prune(now - LOG_SECONDS)
        conn.execute("COMMIT")
        # Before any commit is acknowledged (a request is when ``done`` is set, below; its
        # stamp is already set for apply_request, but nothing reads it before ``done``).
        self._read_cache.apply_commit(accepted)
        if self._catch_up:
            self._catch_up = False
            # Nothing commits in between (this writer holds the turn): the WAL is then fully
            # copied, and the next writer starts it over (see the module docstring).
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        # What is left is this process's own bookkeeping, which no other process waits for:
        # the turn goes now (``_run_batch`` releases it again, harmlessly, on every path).
        self._turn.release()
        history.append(version, now, batch_writes)
        self._commits_since_checkpoint += 1
        self._keys_since_checkpoint += len(batch_writes.points) + len(batch_writes.ranges)
        if self._checkpointer is None:
            self._start_checkpointer()
        elif (self._commits_since_checkpoint >= CHECKPOINT_EVERY
              or self._keys_since_checkpoint >= CHECKPOINT_KEYS):
            self._checkpoint_wake.set()
        self._seen = version
        for request in accepted:
            request.done = True
        self._signal.notify()

    def _resolve(
        self, requests: list[Request], current: int, accepted: list[Request],
        batch_writes: WriteSet,
    ) -> None:
        """Resolve ``requests`` in order, after the ``accepted`` ones of this batch (whose
        writes ``batch_writes`` holds) and against the history up to version ``current``:
        each one accepted is appended to ``accepted`` and its writes added; each one
        rejected gets its error and is done."""
        history = self._history
        for request in requests:
            read_version = request.read_version if request.read_version is not None else current
            if read_version < history.floor:
                request.error = KVError(TRANSACTION_TOO_OLD)
            elif (request.read_keys or request.read_spans) and (
                (accepted and batch_writes.intersects_split(request.read_keys, request.read_spans))
                or (read_version < history.newest
                    and history.conflicts(request.read_keys, request.read_spans, read_version))
            ):
                request.error = KVError(NOT_COMMITTED)
            else:
                accepted.append(request)
                add_write_ranges(batch_writes, request)
                continue
            request.done = True

    def _join_late(
        self, conn: sqlite3.Cursor, batch: list[Request], current: int,
        accepted: list[Request], batch_writes: WriteSet, head: bytes,
    ) -> None:
        """Take into the batch, before its COMMIT, the requests queued while it was being
        applied (appended to ``batch``, whose threads the leader wakes): resolved after its
        requests, stamped after them, and applied in the same write transaction.

        Why (issue 10, eight producer threads): every thread of a batch waits for its COMMIT,
        so the threads woken by one batch build their next transactions one after another
        (they share the interpreter lock) while the next leader commits the few that were
        ready; a batch that takes in whoever is ready until its COMMIT keeps the leader busy
        and makes one fsync serve them. Measured, ``scripts/bench.py``'s shape (8 threads,
        40,000 enqueues, 4 rounds interleaved): 10.1-11.1k enqueues a second against
        9.0-10.1k.

        Latecomers join only a batch of their kind: a durable commit must not ride on a COMMIT
        that is not synced (a batch of relaxed leases only, see ``_run_batch``), and a relaxed
        one, a worker's zone visit, would wait for a sync it did not ask for, with its reads
        growing older: measured with the races bench (16 one-worker consumers), 2.7-3.9 % of
        visits lost that way against 3.2-7.6 % when they joined any durable batch. At most
        ``LATE_JOIN_MAX`` requests a batch, so that a stream of commits cannot hold the write
        lock (and other processes) for long."""
        any_kind = self.synchronous != "FULL"  # (no commit is synced on its own then)
        relaxed = self._writer_level != "FULL"  # this batch's kind
        commit_lock = self._commit_lock
        while len(batch) < LATE_JOIN_MAX:
            commit_lock.acquire()
            late = self._pending
            take = min(len(late), LATE_JOIN_MAX - len(batch))
            if not any_kind:
                for position in range(take):
                    if late[position].relaxed != relaxed:
                        take = position  # (in the order they came: the others wait)
                        break
            late, self._pending = late[:take], late[take:]
            commit_lock.release()
            if not late:
                return
            batch.extend(late)
            first = len(accepted)
            self._resolve(late, current, accepted, batch_writes)
            if len(accepted) > first:
                self._apply(conn, accepted[first:], first, head, batch_writes)

    def _apply(
        self, conn: sqlite3.Cursor, requests: list[Request], first: int, head: bytes,
        batch_writes: WriteSet, rows: BoundRows | None = None,
    ) -> None:
        """Stamp ``requests`` (accepted, in commit order) with the batch's version ``head``
        and their places from ``first`` on, and write them: one straight from its write
        buffer (the usual batch: no merging, see ``sqlite_commit.BatchWriter``; ``rows``, its
        rows bound already), several merged."""
        for order, request in enumerate(requests, first):
            request.stamp = head + order.to_bytes(2, "big")
        if len(requests) == 1:
            stamp = requests[0].stamp
            assert stamp is not None
            apply_request(conn, requests[0], stamp, batch_writes, self._values, rows)
        else:
            apply_batch(conn, requests, batch_writes, self._values)

    # -- checkpoints -------------------------------------------------------------------------
    def _start_checkpointer(self) -> None:
        thread = threading.Thread(
            target=self._checkpoint_loop, name="quick_queue-checkpoint", daemon=True
        )
        self._checkpointer = thread
        thread.start()

    def _checkpoint_loop(self) -> None:
        try:
            conn = self._connect()
        except KVError:
            return
        while not self._closed:
            self._checkpoint_wake.wait(CHECKPOINT_SECONDS)
            self._checkpoint_wake.clear()
            if self._closed or not self._commits_since_checkpoint:
                continue
            self._commits_since_checkpoint = self._keys_since_checkpoint = 0
            self._checkpoint_once(conn)

    def _checkpoint_once(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL into the database file without blocking anyone (PASSIVE: frames a
        reader still needs are copied on a later round); if the WAL is long, ask the writer to
        catch up after its next commit so that the WAL restarts (see the module docstring)."""
        try:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        except sqlite3.Error:
            return
        if row is not None and row[1] >= catch_up_frames(int(page_size)):
            self._catch_up = True
