"""The compact de-duplication set (shared/contacts/dedup.py): exact set semantics, pure."""

from __future__ import annotations

import random

from shared.contacts.dedup import EmailSet, HashSet64


def test_first_time_is_true_once_per_email() -> None:
    emails = EmailSet()
    assert emails.first_time("ana@example.com")
    assert not emails.first_time("ana@example.com")
    assert emails.first_time("bob@example.com")
    assert "ana@example.com" in emails and "bob@example.com" in emails
    assert "eve@example.com" not in emails
    assert len(emails) == 2


def test_keys_sharing_a_slot_are_all_kept() -> None:
    # Keys equal modulo the table size land on one home slot: linear probing must keep each,
    # including across the end of the table and after a key is looked up that is not there.
    keys = HashSet64()
    capacity = 1024
    colliding = [capacity - 1 + capacity * n for n in range(40)] + [-(capacity * n + 1) for n in range(1, 40)]
    for key in colliding:
        assert keys.add_key(key)
    assert not keys.has_key(capacity - 1 + capacity * 40)
    for key in colliding:
        assert keys.has_key(key)
        assert not keys.add_key(key)
    assert len(keys) == len(colliding)


def test_growth_keeps_every_key() -> None:
    rng = random.Random(5)
    keys = HashSet64()
    values = {rng.getrandbits(64) - (1 << 63) for _ in range(50_000)} - {0}
    for value in values:
        assert keys.add_key(value)
    assert keys.nbytes >= 8 * len(values) * 4 // 3  # grew past its first 1,024 slots, stays <= 3/4 full
    assert all(keys.has_key(value) for value in values)
    assert not any(keys.add_key(value) for value in values)
    assert len(keys) == len(values)
    absent = {rng.getrandbits(64) - (1 << 63) for _ in range(5_000)} - values - {0}
    assert not any(keys.has_key(value) for value in absent)


def test_zero_is_a_key_like_any_other() -> None:
    keys = HashSet64()
    assert not keys.has_key(0)
    assert keys.add_key(0)
    assert keys.has_key(0) and not keys.add_key(0)
    assert keys.add_key(1024) and keys.add_key(-1024)  # the home slot of 0, still free for others
    assert len(keys) == 3
    emails = EmailSet()
    assert hash("") == 0  # CPython: the empty string hashes to 0
    assert "" not in emails
    assert emails.first_time("") and not emails.first_time("")
    assert "" in emails


def test_many_duplicates_count_once() -> None:
    emails = EmailSet(expected=10)
    population = [f"person{i}@example.com" for i in range(3_000)]
    rng = random.Random(9)
    firsts = [email for email in (rng.choice(population) for _ in range(60_000)) if emails.first_time(email)]
    assert len(firsts) == len(set(firsts)) == len(emails)
    assert set(firsts) <= set(population) and len(firsts) > 2_900
    assert all(email in emails for email in firsts)


def test_agrees_with_a_python_set() -> None:
    rng = random.Random(3)
    emails, reference = EmailSet(), set()
    for _ in range(40_000):
        email = f"u{rng.randrange(20_000)}@example.com"
        assert emails.first_time(email) == (email not in reference)
        reference.add(email)
    assert len(emails) == len(reference)


def test_expected_size_avoids_growth_but_not_correctness() -> None:
    sized = EmailSet(expected=100_000)
    before = sized.nbytes
    for i in range(100_000):
        sized.first_time(f"p{i}@example.com")
    assert sized.nbytes == before  # no growth below the size asked for
    sized.first_time("one.more@example.com")
    for i in range(100_000, 200_000):
        sized.first_time(f"p{i}@example.com")
    assert sized.nbytes > before and len(sized) == 200_001
    assert all(f"p{i}@example.com" in sized for i in range(0, 200_000, 7))


def test_non_strings_are_not_members() -> None:
    emails = EmailSet()
    emails.first_time("a@example.com")
    assert 0 not in emails and None not in emails
