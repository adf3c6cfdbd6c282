"""The SendGrid sandbox's account lock: a re-entrant lock that hands over in arrival order.

Python's locks are not fair: a thread that releases a lock and takes it again at once (the
import applying a job a slice at a time) gets it back before a woken waiter runs, so a status
poll waited for whole imports (1.1-2.1 s in a bench timeline) where SendGrid answers at once.
Here a release passes the lock straight to the longest waiter, and whoever comes after queues
behind it. Re-entrant like threading.RLock, and used the same way (`with state.lock:`).
Standard library only."""

from __future__ import annotations

import threading
from collections import deque


class FairLock:
    """A re-entrant FIFO lock: `release` makes the longest waiter the owner before it wakes."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()  # guards the fields below, held only briefly
        self._owner: int | None = None
        self._depth = 0
        self._queue: deque[tuple[int, threading.Lock]] = deque()  # (thread, its gate), oldest first

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None and not self._queue:
                self._owner, self._depth = me, 1
                return True
            gate = threading.Lock()
            gate.acquire()
            self._queue.append((me, gate))
        gate.acquire()  # opened by the release that made this thread the owner
        return True

    def release(self) -> None:
        with self._mutex:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release un-acquired lock")
            self._depth -= 1
            if self._depth:
                return
            if self._queue:
                self._owner, gate = self._queue.popleft()
                self._depth = 1
                gate.release()
            else:
                self._owner = None

    @property
    def waiting(self) -> int:
        """How many threads are queued for the lock (what a test waits on before it acts)."""
        with self._mutex:
            return len(self._queue)

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
