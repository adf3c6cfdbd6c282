"""The run's de-duplication set of emails: a compact open-addressing table of 64-bit hashes. Pure.

A run remembers every email it has taken (one call per row, on the hot path), so memory per
profile matters at a million profiles: a Python `set[int]` costs ~60 bytes a profile (a 32-byte
int object plus 16-byte set slots at <= 60% load); this table costs 8 bytes a slot at <= 75%
load, 11-21 bytes a profile, and twice that for a moment while it grows.

An email is reduced to `hash(email)`: Python's str hash (SipHash, 64 bits) is stable within a
process, which is all one run needs, and it costs ~50 ns where blake2b-8 costs ~10x that (see
bench/micro.py). Two emails sharing a hash (about 1 in 10^8 at a million profiles) would be
taken as one. Slots hold the signed hash in an `array("q")`; 0 marks an empty slot, so the one
hash that is 0 (the empty string's, or a rare real one) is remembered by a flag instead.
"""

from __future__ import annotations

from array import array

_MIN_CAPACITY = 1024  # slots; always a power of two
_MAX_LOAD_NUM, _MAX_LOAD_DEN = 3, 4  # grow (double) when more than 3/4 of the slots are taken


def _capacity_for(expected: int) -> int:
    capacity = _MIN_CAPACITY
    while capacity * _MAX_LOAD_NUM // _MAX_LOAD_DEN < expected:
        capacity *= 2
    return capacity


def _zeros(capacity: int) -> array[int]:
    return array("q", (0,)) * capacity  # no temporary bytes object of the same size


class HashSet64:
    """A set of 64-bit signed integers (hashes) in one flat array, linear probing, doubling.

    `expected` sizes the table up front (no growth below it); the set still grows past it."""

    __slots__ = ("_table", "_mask", "_count", "_limit", "_zero")

    def __init__(self, expected: int = 0) -> None:
        capacity = _capacity_for(expected)
        self._table = _zeros(capacity)
        self._mask = capacity - 1
        self._count = 0
        self._limit = capacity * _MAX_LOAD_NUM // _MAX_LOAD_DEN
        self._zero = False

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes held by the table (the object itself adds ~100)."""
        return len(self._table) * self._table.itemsize

    def add_key(self, key: int) -> bool:
        """Add a hash; True if it was not in the set before."""
        table, mask = self._table, self._mask
        i = key & mask
        slot = table[i]
        while slot:
            if slot == key:
                return False
            i = (i + 1) & mask
            slot = table[i]
        if not key:
            return self._add_zero()
        table[i] = key
        self._count += 1
        if self._count > self._limit:
            self._grow()
        return True

    def has_key(self, key: int) -> bool:
        if not key:
            return self._zero
        table, mask = self._table, self._mask
        i = key & mask
        slot = table[i]
        while slot:
            if slot == key:
                return True
            i = (i + 1) & mask
            slot = table[i]
        return False

    def _add_zero(self) -> bool:
        if self._zero:
            return False
        self._zero = True
        self._count += 1  # not in the table: never makes it grow, never needs a slot
        return True

    def _grow(self) -> None:
        old = self._table
        capacity = 2 * len(old)
        table = _zeros(capacity)
        mask = capacity - 1
        for key in filter(None, old):  # every stored key is distinct and non-zero
            i = key & mask
            while table[i]:
                i = (i + 1) & mask
            table[i] = key
        self._table, self._mask = table, mask
        self._limit = capacity * _MAX_LOAD_NUM // _MAX_LOAD_DEN


class EmailSet(HashSet64):
    """The run's emails: `first_time(email)` and `email in emails` (it replaced a Python set of
    hashes). Emails are compared exactly as given (the mapper lower-cases them before)."""

    __slots__ = ()

    def first_time(self, email: str) -> bool:
        """True the first time an email is seen, False on every later call."""
        # add_key inlined: this runs once per row of a run.
        key = hash(email)
        table, mask = self._table, self._mask
        i = key & mask
        slot = table[i]
        while slot:
            if slot == key:
                return False
            i = (i + 1) & mask
            slot = table[i]
        if not key:
            return self._add_zero()
        table[i] = key
        self._count += 1
        if self._count > self._limit:
            self._grow()
        return True

    def __contains__(self, email: object) -> bool:
        return isinstance(email, str) and self.has_key(hash(email))
