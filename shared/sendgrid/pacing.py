"""SendGrid's rate-limit headers: how long a wait they ask for, and pacing per endpoint.

Every answer carries X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset.
- Reset has two forms. Recorded answers of /v3/marketing/* carry the seconds until the window
  resets (values 1-60 counting down second by second; limits 200 for PUT contacts and contacts
  search, 600 for lists and field_definitions: grouparoo
  plugins/@grouparoo/sendgrid/__tests__/fixtures/export/export-record.js, 133 answers recorded
  against api.sendgrid.com). The general "Rate Limits" page
  (https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits)
  shows an epoch second. A value below 1e9 (2001-09-09 as an epoch) is read as seconds to wait,
  a larger one as an epoch. Anything else (`nan`, `inf`, negative, garbage) is unusable: the
  caller falls back to its backoff, never crashes.
- Pacing: when an answer says Remaining is at or below the reserve, the next request to the
  same endpoint waits for that window's reset, so a long run does not burn into 429s.
Pure apart from a lock; the clock is passed in.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Mapping

EPOCH_THRESHOLD = 1e9  # a Reset value at or above this is an epoch second
JITTER = 0.25  # seconds of random extra wait, so parallel callers do not wake together


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except (ValueError, AttributeError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def reset_wait(value: str | None, now: float) -> float | None:
    """Seconds until the window resets, from an X-RateLimit-Reset value; None when unusable.
    An epoch already past gives 0 (the window has reset; clocks differ a little)."""
    reset = _number(value)
    if reset is None:
        return None
    return reset if reset < EPOCH_THRESHOLD else max(reset - now, 0.0)


def remaining(value: str | None) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


class Pacer:
    """Per endpoint (a name the caller chooses, e.g. "PUT /v3/marketing/contacts"), the earliest
    time its next request may go. Thread-safe: the run's threads share one client."""

    def __init__(self, clock: Callable[[], float], max_wait: float, reserve: int = 0) -> None:
        self._clock = clock
        self._max_wait = max_wait
        self._reserve = reserve
        self._not_before: dict[str, float] = {}
        self._lock = threading.Lock()

    def delay(self, endpoint: str) -> float:
        """Seconds to wait before the next request to `endpoint` (0 when it may go now)."""
        with self._lock:
            not_before = self._not_before.get(endpoint)
        if not_before is None:
            return 0.0
        return min(max(not_before - self._clock(), 0.0), self._max_wait)

    def observe(self, endpoint: str, headers: Mapping[str, str]) -> None:
        """Learn from an answer (not a 429: the caller waits those out itself)."""
        left = remaining(headers.get("X-RateLimit-Remaining"))
        now = self._clock()
        wait = reset_wait(headers.get("X-RateLimit-Reset"), now) if left is not None and left <= self._reserve else None
        with self._lock:
            if wait is None:
                self._not_before.pop(endpoint, None)
            else:
                self._not_before[endpoint] = now + min(wait + random.uniform(0, JITTER), self._max_wait)
