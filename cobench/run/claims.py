"""Claim files: how concurrent runs on one results directory split a grid instead of each
training every cell.

Before a run starts a cell it creates ``<result path>.claim`` with ``O_CREAT | O_EXCL``
(atomic on local filesystems and on NFS v3+), holding the claimer's host, pid and start
time. While the run holds claims a daemon thread touches them every
:data:`HEARTBEAT_INTERVAL_S`; the file's mtime is the heartbeat. A run that finds a claim
skips the cell unless the claim is *stale*: its process is gone (same host), or its
heartbeat is older than :data:`STALE_AFTER_S` (any host: a machine that died, a run killed
with SIGKILL elsewhere). A stale claim is taken over, and the run says so. Claims are
removed when their cell's result is written (ok or failed) and when the run ends,
Ctrl-C included.

Known limits: hosts sharing a directory must have clocks within a fraction of
:data:`STALE_AFTER_S`; a run stopped with SIGSTOP for longer than that loses its claims.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cobench.errors import CobenchError
from cobench.store.records import ResultRecord

#: seconds between two heartbeats of a live run's claims
HEARTBEAT_INTERVAL_S = 30.0
#: a claim whose heartbeat is older than this is stale whatever its host (ten missed heartbeats)
STALE_AFTER_S = 10 * HEARTBEAT_INTERVAL_S
CLAIM_SUFFIX = ".claim"
#: a claim file that does not read as one is being written for at most this long; after it, it is stale
WRITE_GRACE_S = 2.0
#: a cell whose process ended during training this many times in a row is recorded as failed, not retried
MAX_INTERRUPTIONS = 2


def claim_path(result_path: Path) -> Path:
    """Where the claim of the cell whose result goes to ``result_path`` lives."""
    return result_path.with_name(result_path.name + CLAIM_SUFFIX)


def this_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class Claim:
    """Who holds a cell: read from a claim file (``host``/``pid`` empty/0 while its writer is still writing it)."""

    path: Path
    host: str
    pid: int
    started_at: str
    heartbeat: float  # the file's mtime (seconds since the epoch)
    #: how many claims on this cell before this one ended with their process (taken over)
    interruptions: int = 0
    #: why the file is not a claim cobench wrote (garbage, cut short), or "" when it is one
    unreadable: str = ""

    @property
    def owner(self) -> str:
        return f"{self.host or '?'}:{self.pid or '?'}"

    def is_mine(self) -> bool:
        return self.host == this_host() and self.pid == os.getpid()

    def stale_reason(self, now: float | None = None, stale_after: float = STALE_AFTER_S) -> str | None:
        """Why this claim no longer protects its cell, or ``None`` while its owner lives."""
        age = (time.time() if now is None else now) - self.heartbeat
        if self.unreadable and age > WRITE_GRACE_S:  # not one being written right now: nobody holds it
            return f"its claim file {self.path} cannot be read ({self.unreadable}), so it is treated as stale"
        if self.host == this_host() and self.pid and not pid_alive(self.pid):
            return f"process {self.pid} on {self.host} ended during training"
        if age > stale_after:
            return f"no heartbeat from {self.owner} for {age:.0f} s (limit {stale_after:.0f} s)"
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    status = Path(f"/proc/{pid}/status")  # a zombie has ended: only its parent has not reaped it yet
    try:
        return "State:\tZ" not in status.read_text()
    except OSError:
        return True


def read_claim(path: Path) -> Claim | None:
    """The claim at ``path``; ``None`` when there is none (it was just released)."""
    try:
        heartbeat = path.stat().st_mtime
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    unreadable = ""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:  # being written right now (for WRITE_GRACE_S at most), or garbage
        data, unreadable = {}, f"not JSON: {exc.msg}" if text.strip() else "empty"
    if not isinstance(data, dict) or not isinstance(data.get("host"), str) or not isinstance(data.get("pid"), int):
        unreadable = unreadable or "no host and pid"
        data = data if isinstance(data, dict) else {}
    pid, interruptions = data.get("pid"), data.get("interruptions")
    return Claim(
        path,
        str(data.get("host", "")),
        pid if isinstance(pid, int) else 0,
        str(data.get("started_at", "")),
        heartbeat,
        interruptions if isinstance(interruptions, int) else 0,
        unreadable,
    )


def create_claim(path: Path, interruptions: int = 0) -> bool:
    """Create the claim at ``path`` for this process; ``False`` when one exists already.
    ``interruptions`` counts the claims before it whose process ended during training."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    record = {
        "host": this_host(),
        "pid": os.getpid(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "interruptions": interruptions,
    }
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError:
        path.unlink(missing_ok=True)
        raise
    return True


def take_over(stale: Claim) -> bool:
    """Replace the stale claim ``stale`` by one of this process; ``False`` when another run
    got there first. The claim is moved aside (only one mover succeeds) and checked to be the
    one judged stale before a new claim is created in its place."""
    aside = stale.path.with_name(f"{stale.path.name}.{this_host()}.{os.getpid()}.stale")
    try:
        os.rename(stale.path, aside)
    except FileNotFoundError:
        return False
    moved = read_claim(aside)
    if moved is None or (moved.host, moved.pid, moved.started_at) != (stale.host, stale.pid, stale.started_at):
        try:  # a peer took it over between our look and our move: give its fresh claim back
            os.link(aside, stale.path)
        except OSError:
            pass
        aside.unlink(missing_ok=True)
        return False
    aside.unlink(missing_ok=True)
    return create_claim(stale.path, stale.interruptions + 1)


def release(path: Path) -> None:
    """Remove this process's claim at ``path`` (a claim taken over by another run is left alone)."""
    try:
        claim = read_claim(path)
        if claim is not None and claim.is_mine():
            path.unlink(missing_ok=True)
    except OSError:  # a read-only results dir: the claim stays, and is stale once this process ends
        pass


def live_holder(result_path: Path) -> str | None:
    """``host:pid`` of the live run training the cell whose result goes to ``result_path``, if any."""
    claim = read_claim(claim_path(result_path))
    return claim.owner if claim is not None and claim.stale_reason() is None else None


class ClaimKeeper:
    """The claims one run holds: heartbeats them from a daemon thread, releases them all on exit."""

    def __init__(self, interval: float = HEARTBEAT_INTERVAL_S, stale_after: float = STALE_AFTER_S):
        self.interval, self.stale_after = interval, stale_after
        self.held: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="cobench-claim-heartbeat", daemon=True)

    def __enter__(self) -> ClaimKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        with self._lock:
            held, self.held = self.held, set()
        for path in held:
            release(path)

    def acquire(self, path: Path) -> tuple[bool, Claim | None, str | None]:
        """Try to claim ``path``: ``(True, None, None)``; ``(True, old, why)`` when a stale claim
        was taken over; ``(False, holder, None)`` when a live run holds it."""
        for _ in range(3):  # the holder may release between our create and our read
            if create_claim(path):
                self._hold(path)
                return True, None, None
            holder = read_claim(path)
            if holder is None:
                continue
            why = holder.stale_reason(stale_after=self.stale_after)
            if why is None:
                return False, holder, None
            if take_over(holder):
                self._hold(path)
                return True, holder, why
        return False, read_claim(path), None

    def release(self, path: Path) -> None:
        with self._lock:
            self.held.discard(path)
        release(path)

    def _hold(self, path: Path) -> None:
        with self._lock:
            self.held.add(path)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                held = list(self.held)
            for path in held:
                try:
                    os.utime(path)
                except OSError:  # released meanwhile, or the filesystem hiccuped: the next beat retries
                    pass


@dataclass
class Skipped:
    """A cell left to another run, and who holds it."""

    cell: Any
    holder: str


class ClaimedCells:
    """The cells a run still has to train, claimed one by one as an executor takes them.

    Iterating yields a cell only once this run holds its claim and the cell has no finished
    result (a peer may have finished it meanwhile: ``on_finished`` gets that result). Cells a
    live peer holds are set aside; once the rest are handed out they are looked at once more,
    and those whose claim went stale (or that were released unfinished) are taken after all.
    A cell whose process ended during training :data:`MAX_INTERRUPTIONS` times in a row is
    not handed out: ``on_given_up`` gets it and why (the runner records it as failed).
    ``len()`` is the number of cells to do, an upper bound on what iteration yields.
    """

    def __init__(
        self,
        cells: Sequence[Any],
        path_of: Callable[[Any], Path],
        keeper: ClaimKeeper,
        finished: Callable[[Any], ResultRecord | None],
        on_finished: Callable[[Any, ResultRecord], None],
        notice: Callable[[str], None],
        on_given_up: Callable[[Any, str], None],
    ):
        self.cells = list(cells)
        self.path_of, self.keeper, self.finished = path_of, keeper, finished
        self.on_finished, self.notice, self.on_given_up = on_finished, notice, on_given_up
        #: cells a live peer is training (final once iteration ended)
        self.busy: list[Skipped] = []

    def __len__(self) -> int:
        return len(self.cells)

    def __iter__(self) -> Iterator[Any]:
        for cell in self.cells:
            if self._take(cell):
                yield cell
        waiting, self.busy = self.busy, []
        for skipped in waiting:  # a second look, after our own work was handed out
            if self._take(skipped.cell):
                yield skipped.cell

    def _take(self, cell: Any) -> bool:
        path = claim_path(self.path_of(cell))
        try:
            got, holder, why = self.keeper.acquire(path)
        except OSError as exc:
            raise CobenchError(
                f"cannot claim {path.name} in {path.parent}: {exc.strerror or exc} (errno {exc.errno}); "
                "the results directory must be writable"
            ) from None
        done = self.finished(cell)
        if not got:
            if done is None:
                self.busy.append(Skipped(cell, holder.owner if holder else "?"))
            else:
                self.on_finished(cell, done)
            return False
        if done is not None:  # a peer finished it between our plan and our claim
            self.keeper.release(path)
            self.on_finished(cell, done)
            return False
        if why is None:
            return True
        label = getattr(cell, "label", cell)
        times = holder.interruptions + 1 if holder else 1
        if times >= MAX_INTERRUPTIONS:
            self.on_given_up(
                cell,
                f"training ended with its process {times} times in a row (last: {why}); a "
                "component may call os._exit or crash: --executor local-parallel runs each cell "
                "in a worker process, which records the crash",
            )
            return False
        self.notice(f"{label}: was interrupted ({why}); taking it over")
        return True

    def release(self, cell: Any) -> None:
        self.keeper.release(claim_path(self.path_of(cell)))
