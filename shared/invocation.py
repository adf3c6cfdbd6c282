"""The Functions invocation a thread works for, so that log lines written on the app's own threads
reach the host tied to their invocation.

Under the real Python worker (docs/reference.md, "The Python worker"), a log record carries the
invocation id only on the invocation's own thread: the worker reads it from a thread-local,
`context.thread_local_storage`. A thread the app starts adopts it by setting
`context.thread_local_storage.invocation_id = context.invocation_id` on that thread.

- `serving(context)`: the triggers run their work inside it, with the `context` the host passes to
  `main` (None outside the host: tests, the CLI).
- `carry_invocation()`: called where the app starts a thread; returns what the new thread calls
  first (`ThreadPoolExecutor(..., initializer=carry_invocation())`, or first thing in a
  `threading.Thread` target). It ties the new thread to the same invocation, and threads that one
  starts in turn. Outside an invocation it does nothing.

Standard library only, and no import of the app, so every layer may use it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class HostContext(Protocol):
    """What the app uses of azure.functions.Context."""

    @property
    def invocation_id(self) -> str: ...

    @property
    def thread_local_storage(self) -> Any: ...  # a threading.local of the worker's


_current = threading.local()  # .context: the HostContext this thread works for, if any


@contextmanager
def serving(context: HostContext | None) -> Iterator[None]:
    """This thread works for the invocation `context` until the block ends."""
    previous = getattr(_current, "context", None)
    _current.context = context
    try:
        yield
    finally:
        _current.context = previous


def _nothing() -> None:
    pass


def carry_invocation() -> Callable[[], None]:
    """What a thread started now calls first to work for this thread's invocation (if any)."""
    context: HostContext | None = getattr(_current, "context", None)
    if context is None:
        return _nothing

    def adopt() -> None:
        _current.context = context
        try:
            context.thread_local_storage.invocation_id = context.invocation_id
        except Exception:  # a host without it: the lines go untied, the work goes on
            pass

    return adopt
