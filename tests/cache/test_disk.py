"""SafeDisk: bytes only, never unpickles, never leaves the cache directory."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest
from diskcache.core import MODE_BINARY, MODE_PICKLE, MODE_RAW, MODE_TEXT

from claude_force_magic.cache.disk import VALUE_NAME, SafeDisk
from claude_force_magic.errors import IntegrityError


class MakesMarker:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


@pytest.fixture
def disk(tmp_path: Path) -> SafeDisk:
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    return SafeDisk(str(root), min_file_size=64)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    victim = tmp_path / "outside.val"
    victim.write_bytes(b"precious")
    return victim


def test_only_str_keys(disk: SafeDisk) -> None:
    assert disk.put("k") == ("k", True)
    for bad in (b"k", 1, 1.5, ("k",)):
        with pytest.raises(TypeError, match="str"):
            disk.put(bad)


def test_stored_keys_are_never_unpickled(disk: SafeDisk, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with pytest.raises(IntegrityError):
        disk.get(pickle.dumps(MakesMarker(str(marker))), False)
    assert not marker.exists()


def test_only_bytes_values(disk: SafeDisk) -> None:
    for bad in ("text", 1, 2.5, {"a": 1}, bytearray(b"x")):
        with pytest.raises(TypeError, match="bytes"):
            disk.store(bad, False)
    with pytest.raises(TypeError):
        disk.store(b"x", True)


def test_small_values_inline_large_values_in_private_files(disk: SafeDisk) -> None:
    assert disk.store(b"small", False)[:3] == (0, MODE_RAW, None)
    size, mode, name, value = disk.store(b"x" * 100, False)
    assert (size, mode, value) == (100, MODE_BINARY, None)
    assert VALUE_NAME.match(name)
    path = Path(disk._directory, name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert disk.fetch(MODE_BINARY, name, None, False) == b"x" * 100


@pytest.mark.parametrize("mode", [MODE_PICKLE, MODE_TEXT, 0, 9])
def test_rows_in_other_modes_are_refused_and_never_unpickled(
    disk: SafeDisk, tmp_path: Path, mode: int
) -> None:
    marker = tmp_path / "marker"
    payload = pickle.dumps(MakesMarker(str(marker)))
    with pytest.raises(IntegrityError, match="mode"):
        disk.fetch(mode, None, payload, False)
    assert not marker.exists()


def test_file_handles_are_not_handed_out(disk: SafeDisk) -> None:
    with pytest.raises(TypeError):
        disk.fetch(MODE_RAW, None, b"x", True)


def test_filenames_follow_the_pattern(disk: SafeDisk) -> None:
    names = {disk.filename()[0] for _ in range(50)}
    assert len(names) == 50 and all(VALUE_NAME.match(n) for n in names)


@pytest.mark.parametrize(
    "forged",
    ["{outside}", "../outside.val", "ab/cd/../../../outside.val", "ab/cd/" + "0" * 28 + ".txt", ""],
)
def test_forged_names_are_neither_read_nor_deleted(
    disk: SafeDisk, outside: Path, forged: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = forged.format(outside=outside)
    opened: list[str] = []
    real_open = os.open

    def spy(path: str, *args: object, **kwargs: object) -> int:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", spy)
    with pytest.raises(IntegrityError, match="pattern"):
        disk.fetch(MODE_BINARY, name, None, False)
    disk.remove(name)
    assert opened == []  # nothing was even opened
    assert outside.read_bytes() == b"precious"


def test_remove_deletes_own_file_and_empty_directories(disk: SafeDisk) -> None:
    _, _, name, _ = disk.store(b"y" * 100, False)
    disk.remove(name)
    first = Path(disk._directory, name.split("/")[0])
    assert not first.exists()
    disk.remove(name)  # removing twice is harmless (two processes may race)


def test_symlinked_value_file_is_refused(disk: SafeDisk, outside: Path) -> None:
    _, _, name, _ = disk.store(b"z" * 100, False)
    path = Path(disk._directory, name)
    path.unlink()
    path.symlink_to(outside)
    with pytest.raises(IntegrityError, match="symlink"):
        disk.fetch(MODE_BINARY, name, None, False)
    disk.remove(name)  # removes the link inside the cache, never its target
    assert outside.read_bytes() == b"precious"


def test_symlinked_value_directory_is_refused(disk: SafeDisk, tmp_path: Path) -> None:
    _, _, name, _ = disk.store(b"z" * 100, False)
    first, second, leaf = name.split("/")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / second).mkdir(parents=True)
    target = elsewhere / second / leaf
    target.write_bytes(b"planted")
    real = Path(disk._directory, first)
    os.replace(real, tmp_path / "moved")
    real.symlink_to(elsewhere)
    with pytest.raises(IntegrityError, match="symlink"):
        disk.fetch(MODE_BINARY, name, None, False)
    disk.remove(name)
    assert target.read_bytes() == b"planted"


def test_oversized_value_file_is_refused_without_reading_it(disk: SafeDisk) -> None:
    _, _, name, _ = disk.store(b"w" * 100, False)
    disk.max_value_bytes = 50
    with pytest.raises(IntegrityError, match="larger"):
        disk.fetch(MODE_BINARY, name, None, False)


def test_missing_value_file_is_an_integrity_error(disk: SafeDisk) -> None:
    with pytest.raises(IntegrityError, match="missing"):
        disk.fetch(MODE_BINARY, "ab/cd/" + "0" * 28 + ".val", None, False)


def test_inline_value_must_be_bytes(disk: SafeDisk) -> None:
    with pytest.raises(IntegrityError):
        disk.fetch(MODE_RAW, None, "text", False)


def test_value_files_tolerates_files_and_directories_removed_while_listing(
    disk: SafeDisk,
) -> None:
    # verify()'s orphan sweep lists value files while other processes delete entries (and
    # their emptied sub-directories): a vanished directory or file is skipped, not an error.
    root = Path(disk._directory)
    names = [f"ab/{second}/{'0' * 27}{i}.val" for i, second in enumerate(("01", "02", "03"))]
    for name in names:
        (root / name).parent.mkdir(parents=True)
        (root / name).write_bytes(b"x")
    listing = disk.value_files()
    first, _mtime = next(listing)
    for name in names:
        if name != first:  # another process removes the entry and its emptied directories
            (root / name).unlink()
            (root / name).parent.rmdir()
    assert list(listing) == []


def test_reading_a_value_file_allocates_its_size_not_the_bound(tmp_path: Path) -> None:
    import tracemalloc

    disk = SafeDisk(str(tmp_path), min_file_size=1024)
    disk.max_value_bytes = 16 * 2**20
    value = b"v" * 100_000
    _size, mode, filename, db_value = disk.store(value, False)
    assert mode == MODE_BINARY
    tracemalloc.start()
    try:
        assert disk.fetch(mode, filename, db_value, False) == value
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(value), f"reading 100 KB peaked at {peak:,} bytes"  # was 16 MiB
