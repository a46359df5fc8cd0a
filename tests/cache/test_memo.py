"""The memo of verified bodies (cache/memo.py): a repeated hit skips the signature check, but
never serves an edited, forged, replaced or expired answer."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable

import pytest

from claude_force_magic.cache import ResponseCache
from claude_force_magic.cache.memo import VerifiedMemo
from claude_force_magic.cache.signing import Fields, Signer
from claude_force_magic.settings import Secret

from .conftest import FakeClock, db_execute, fetch, put

MakeCache = Callable[..., ResponseCache]


def key(cache: ResponseCache, task: str) -> str:
    return cache.key_for("python-expert", task, "m")


def row_of(cache: ResponseCache, task: str) -> tuple[int, float, bytes]:
    ((rowid, stored, value),) = db_execute(
        cache.directory,
        "SELECT rowid, store_time, value FROM Cache WHERE key = ?",
        (key(cache, task),),
    )
    return rowid, stored, value


@pytest.fixture(params=[False, True], ids=["plain", "encrypted"])
def cache(make_cache: MakeCache, request: pytest.FixtureRequest) -> ResponseCache:
    return make_cache(encrypt=request.param)


def test_a_repeated_hit_skips_the_signature_check(
    cache: ResponseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(cache, "t", "the answer")
    assert fetch(cache, "t") is not None  # verified and remembered
    opened: list[str] = []
    real_open = Signer.open_fields

    def counting_open(self: Signer, k: str, data: bytes) -> Fields:
        opened.append(k)
        return real_open(self, k, data)

    monkeypatch.setattr(Signer, "open_fields", counting_open)
    assert fetch(cache, "u") is None and opened == []  # a miss opens nothing
    put(cache, "u", "another answer")
    assert fetch(cache, "u") is not None and opened == [key(cache, "u")]  # verified once...
    for _ in range(5):
        hit = fetch(cache, "t")
        assert hit is not None and hit["response"] == "the answer"
    assert opened == [key(cache, "u")]  # ...and "t", remembered, never again
    assert cache.get_stats()["hits"] == 7


def test_value_edited_in_place_after_a_hit_is_never_served(cache: ResponseCache) -> None:
    put(cache, "t", "the real answer, long enough to edit its middle")
    assert fetch(cache, "t") is not None  # remembered for this row version
    rowid, _stored, value = row_of(cache, "t")
    edited = bytearray(value)
    edited[len(value) // 2] ^= 0x01  # keeps rowid, store_time and the last 16 bytes
    db_execute(
        cache.directory, "UPDATE Cache SET value = ? WHERE rowid = ?", (bytes(edited), rowid)
    )
    hit = fetch(cache, "t")
    assert hit is not None and hit["response"].startswith("the real answer")  # the verified one
    report = cache.verify()  # reads the stored bytes: finds the edit and removes it
    assert len(report.invalid) == 1
    assert fetch(cache, "t") is None


def test_value_edited_in_its_tag_after_a_hit_is_noticed_at_once(cache: ResponseCache) -> None:
    put(cache, "t", "the real answer")
    assert fetch(cache, "t") is not None
    rowid, _stored, value = row_of(cache, "t")
    edited = bytearray(value)
    edited[-5] ^= 0x01  # the stamp of the row version changed: read and verified again
    db_execute(
        cache.directory, "UPDATE Cache SET value = ? WHERE rowid = ?", (bytes(edited), rowid)
    )
    assert fetch(cache, "t") is None
    assert cache.get_stats()["integrity_failures"] == 1


def test_forged_row_keeping_rowid_and_store_time_is_never_served(cache: ResponseCache) -> None:
    put(cache, "t", "the real answer")
    assert fetch(cache, "t") is not None
    rowid, _stored, _value = row_of(cache, "t")
    forger = Signer(Secret("an-attackers-secret-0123456789ab"), encrypt=cache.encrypt)
    forged = forger.seal(
        key(cache, "t"),
        {"response": "FORGED", "agent_name": "python-expert", "model": "m",
         "input_tokens": 1, "output_tokens": 1, "estimated_cost": 0.0,
         "created_at": 0.0, "expires_at": 4e9, "metadata": {}},
    )  # fmt: skip
    db_execute(cache.directory, "UPDATE Cache SET value = ? WHERE rowid = ?", (forged, rowid))
    for _ in range(3):
        hit = fetch(cache, "t")
        assert hit is None or hit["response"] == "the real answer"


def test_an_answer_replaced_by_another_process_is_read_again(make_cache: MakeCache) -> None:
    reader = make_cache()
    writer = make_cache()  # another ResponseCache on the same directory: another connection
    put(writer, "t", "first answer")
    assert (fetch(reader, "t") or {})["response"] == "first answer"
    put(writer, "t", "second answer")  # rewrites the row: same rowid, new store_time
    assert (fetch(reader, "t") or {})["response"] == "second answer"


def test_an_answer_deleted_and_stored_again_is_read_again(make_cache: MakeCache) -> None:
    reader, writer = make_cache(), make_cache()
    put(writer, "t", "first answer")
    assert (fetch(reader, "t") or {})["response"] == "first answer"
    rowid, _stored, _value = row_of(writer, "t")
    assert writer.delete("python-expert", "t", "m")
    put(writer, "t", "second answer")  # SQLite reuses the largest rowid after a delete
    assert row_of(writer, "t")[0] == rowid
    assert (fetch(reader, "t") or {})["response"] == "second answer"


@pytest.mark.parametrize("size", [100, 40_000], ids=["inline", "value-file"])
def test_an_entry_re_sealed_in_place_is_read_again(
    cache: ResponseCache, clock: FakeClock, size: int
) -> None:
    """A new expiry written into the row without a new store_time (as an 'extend' does) is
    seen at once: the stored bytes' stamp changed."""
    put(cache, "t", "A" * size, ttl_hours=1)
    assert fetch(cache, "t") is not None  # remembered with the 1-hour expiry
    assert cache._db is not None and cache._signer is not None
    row = cache._db.read_row(key(cache, "t"))
    assert row is not None
    body = cache._signer.open(row[1], cache._db.fetch_value(row))
    body["expires_at"] = clock.now + 48 * 3600
    blob = cache._signer.seal(row[1], body)
    disk = cache._db.disk
    stored_size, mode, filename, value = disk.store(blob, False)
    db_execute(
        cache.directory,
        "UPDATE Cache SET size = ?, mode = ?, filename = ?, value = ? WHERE rowid = ?",
        (stored_size, mode, filename, value, row[0]),
    )
    clock.advance(2 * 3600)  # past the old expiry, within the new one
    hit = fetch(cache, "t")
    assert hit is not None and hit["expires_at"] == clock.now + 46 * 3600


def test_a_remembered_answer_still_expires(cache: ResponseCache, clock: FakeClock) -> None:
    put(cache, "t", ttl_hours=1)
    assert fetch(cache, "t") is not None
    clock.advance(3601)
    assert fetch(cache, "t") is None
    assert cache.get_stats()["expirations"] == 1


def test_changing_a_returned_answer_does_not_change_the_next_hit(cache: ResponseCache) -> None:
    put(cache, "t", "answer", metadata={"stop_reason": "end_turn", "options": {"n": [1]}})
    first = fetch(cache, "t")
    assert first is not None
    first["metadata"]["stop_reason"] = "changed by the caller"
    first["metadata"]["options"]["n"].append(2)
    first["response"] = "changed"
    again = fetch(cache, "t")
    assert again is not None and again["response"] == "answer"
    assert again["metadata"] == {"stop_reason": "end_turn", "options": {"n": [1]}}


def test_remembered_entries_hold_only_immutable_values(cache: ResponseCache) -> None:
    """What the memo keeps cannot be changed through anything a lookup returns, and the
    garbage collector stops tracking it (no mutable container inside)."""
    put(cache, "t", "answer", metadata={"stop_reason": "end_turn", "options": {"n": [1]}})
    first = fetch(cache, "t")
    assert first is not None
    ((rowid, stored, stamp, fields, size),) = cache._memo._items.values()
    assert fields[0] == "answer" and json.loads(fields[8]) == first["metadata"]
    immutable = (str, int, float, bytes, type(None))
    assert all(type(v) in immutable for v in (rowid, stored, stamp, size, *fields))
    gc.collect()
    assert not gc.is_tracked(fields)
    again = fetch(cache, "t")
    assert again is not None and again["metadata"] is not first["metadata"]


def test_the_memo_stays_within_its_bounds(make_cache: MakeCache) -> None:
    cache = make_cache()
    cache._memo = VerifiedMemo(max_bytes=64 * 1024, max_entries=10)
    for i in range(40):
        put(cache, f"t{i}", f"answer {i} " * 100)
    for i in range(40):
        assert fetch(cache, f"t{i}") is not None
    assert len(cache._memo) <= 10 and cache._memo.size_bytes <= 64 * 1024
    big = VerifiedMemo(max_bytes=64 * 1024)
    found = (1, 0, None, b"stamp", 1.0)  # a row as a lookup reads it
    big.put("k", found, {}, 9000)  # over an eighth of the bound: not remembered
    assert len(big) == 0


def test_a_reopened_directory_forgets_what_was_remembered(make_cache: MakeCache) -> None:
    import shutil

    cache = make_cache()
    put(cache, "t", "answer")
    assert fetch(cache, "t") is not None and len(cache._memo) == 1
    shutil.rmtree(cache.directory)
    put(cache, "u", "in the new directory")  # a write notices at once and reopens
    assert len(cache._memo) == 0
    assert fetch(cache, "t") is None


def test_lookups_after_close_and_in_a_forked_child_use_a_live_connection(
    make_cache: MakeCache,
) -> None:
    import os

    cache = make_cache()
    put(cache, "t", "the answer")
    assert fetch(cache, "t") is not None
    cache.close()  # closes this thread's connection: the next lookup must reopen it
    assert (fetch(cache, "u") is None) and (fetch(cache, "t") or {})["response"] == "the answer"
    pid = os.fork()
    if pid == 0:  # the child: its own connection, not the parent's
        code = 1
        try:
            cache._memo.clear()
            hit = fetch(cache, "t")
            code = 0 if hit is not None and hit["response"] == "the answer" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (fetch(cache, "t") or {})["response"] == "the answer"
