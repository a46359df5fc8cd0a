"""settings: the cache secret (never a default) and private directories (no symlink, no sharing)."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest

from claude_force_magic import settings
from claude_force_magic.errors import SecretError, UnsafePathError
from claude_force_magic.settings import Secret, ensure_private_dir, load_cache_secret

GOOD = "a-perfectly-good-secret-0123456789"


def key_file() -> Path:
    return settings.config_dir() / settings.KEY_FILE_NAME


# -- Secret -----------------------------------------------------------------------------------


def test_secret_repr_and_str_are_masked() -> None:
    secret = Secret(GOOD)
    assert GOOD not in repr(secret) and GOOD not in str(secret) and GOOD not in f"{secret!r}"
    assert secret.reveal() == GOOD and secret.as_bytes() == GOOD.encode()


def test_secret_cannot_be_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Secret(GOOD))


# -- choosing the cache secret ----------------------------------------------------------------


@pytest.mark.parametrize(
    "placeholder", ["default_secret_change_in_production", "DEFAULT_SECRET_CHANGE_IN_PRODUCTION "]
)
def test_sec_001_placeholder_secret_refused(placeholder: str) -> None:
    with pytest.raises(SecretError, match="placeholder") as info:
        load_cache_secret(placeholder)
    assert "secrets.token_hex" in str(info.value)  # says how to make a good one


def test_sec_001_placeholder_from_environment_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.CACHE_SECRET_ENV, "default_secret_change_in_production")
    with pytest.raises(SecretError, match="CLAUDE_CACHE_SECRET"):
        load_cache_secret()


@pytest.mark.parametrize("short", ["x", "fifteen-bytes!!", b"\x00" * 15])
def test_short_secret_refused_without_echoing_it(short: str | bytes) -> None:
    with pytest.raises(SecretError, match="at least 16") as info:
        load_cache_secret(short)
    text = short if isinstance(short, str) else short.decode()
    assert len(text) < 4 or text not in str(info.value)


def test_explicit_beats_environment_beats_key_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.CACHE_SECRET_ENV, "from-the-environment-0123456789")
    assert load_cache_secret(GOOD).reveal() == GOOD.encode()
    assert load_cache_secret(Secret(GOOD)).reveal() == GOOD.encode()
    assert load_cache_secret().reveal() == b"from-the-environment-0123456789"
    assert not key_file().exists()


def test_key_file_generated_0600_and_reused() -> None:
    first = load_cache_secret()
    path = key_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(path.read_bytes()) == 32 and first.as_bytes() == path.read_bytes()
    assert load_cache_secret() == first  # reused, not regenerated


def test_key_file_readable_by_others_refused() -> None:
    load_cache_secret()
    key_file().chmod(0o644)
    with pytest.raises(UnsafePathError, match="chmod 600"):
        load_cache_secret()


def test_symlinked_key_file_refused(tmp_path: Path) -> None:
    planted = tmp_path / "planted.key"
    planted.write_bytes(b"k" * 32)
    planted.chmod(0o600)
    ensure_private_dir(settings.config_dir())
    key_file().symlink_to(planted)
    with pytest.raises(UnsafePathError, match="symlink"):
        load_cache_secret()


def test_truncated_key_file_refused() -> None:
    ensure_private_dir(settings.config_dir())
    fd = os.open(key_file(), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"short")
    os.close(fd)
    with pytest.raises(SecretError, match="delete it"):
        load_cache_secret()


# -- private directories ----------------------------------------------------------------------


def test_directory_created_0700_with_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    assert ensure_private_dir(target) == target
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700


def test_sec_003_symlinked_directory_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="symlink"):
        ensure_private_dir(link)


@pytest.mark.skipif(
    not hasattr(os, "getuid") or os.getuid() != 0,
    reason="giving a directory to another user needs root (os.chown)",
)
def test_foreign_owned_directory_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 12345, 12345)
    with pytest.raises(UnsafePathError, match="owned by uid 12345"):
        ensure_private_dir(theirs)


@pytest.mark.parametrize("mode", [0o770, 0o720, 0o702, 0o777])
def test_group_or_other_writable_directory_refused(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(UnsafePathError, match="chmod 700"):
        ensure_private_dir(shared)


def test_readable_but_not_writable_by_others_is_accepted(tmp_path: Path) -> None:
    target = tmp_path / "readable"
    target.mkdir()
    target.chmod(0o755)
    assert ensure_private_dir(target) == target


def test_a_file_is_not_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(UnsafePathError, match="not a directory"):
        ensure_private_dir(path)


def test_missing_directory_without_create(tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError, match="does not exist"):
        ensure_private_dir(tmp_path / "missing", create=False)


def test_cache_dir_and_config_dir_follow_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.CACHE_DIR_ENV, str(tmp_path / "cc"))
    monkeypatch.setenv(settings.CONFIG_DIR_ENV, str(tmp_path / "cfg"))
    assert settings.cache_dir() == tmp_path / "cc"
    assert settings.config_dir() == tmp_path / "cfg"


@pytest.mark.parametrize(
    "weak",
    [" " * 16, "\t \n" * 8, "  fifteen-bytes!!  ", b"\x00" * 32, "a" * 40, 32, 2**255],
    ids=["spaces", "whitespace", "padded-short", "zero-bytes", "repeated", "int", "big-int"],
)
def test_sec_001_weak_or_mistyped_secret_refused(weak: object) -> None:
    # An int is not silently turned into bytes(n) (n zero bytes); whitespace and one repeated
    # byte are secrets anyone can guess.
    with pytest.raises(SecretError, match=r"secrets\.token_hex"):
        load_cache_secret(weak)  # type: ignore[arg-type]


def test_secret_with_unicode_and_inner_spaces_is_kept_exactly() -> None:
    text = "  pässwörd mit Leerzeichen ✓  "
    assert load_cache_secret(text).reveal() == text.encode("utf-8")


def test_key_file_replaced_by_a_fifo_is_refused_without_hanging() -> None:
    # Opening a FIFO for reading blocks until a writer appears: ResponseCache() would hang.
    import threading

    ensure_private_dir(settings.config_dir())
    os.mkfifo(key_file(), 0o600)
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            load_cache_secret()
            outcome.append(None)
        except BaseException as exc:  # reported below
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():  # unblock the reader so the thread ends
        fd = os.open(key_file(), os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(5)
        pytest.fail("load_cache_secret blocked on a FIFO key file")
    assert isinstance(outcome[0], UnsafePathError)
    assert "regular file" in str(outcome[0])


def test_foreign_owned_directory_refused_without_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The root-only test above is skipped on an ordinary machine; here the directory is ours
    # but we pretend to be another user, so the ownership check runs everywhere.
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    monkeypatch.setattr(os, "getuid", lambda: mine.stat().st_uid + 1)
    with pytest.raises(UnsafePathError, match="not by you"):
        ensure_private_dir(mine)


def test_foreign_owned_key_file_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # README: the key file is refused if foreign-owned; the directory stays ours, only the
    # opened key file reports another owner (chown would need root).
    load_cache_secret()  # generates the key file, ours
    owner = key_file().stat().st_uid
    real_fstat = os.fstat

    def fstat(fd: int) -> os.stat_result:
        fields = list(real_fstat(fd))
        fields[stat.ST_UID] = owner + 1
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", fstat)
    with pytest.raises(UnsafePathError, match="owned by another user"):
        load_cache_secret()


# -- issue 9 §3: bounded TTLs, directories that cannot be created -----------------------------


@pytest.mark.parametrize("ttl", [87_600_000, 1e308, float("inf"), float("nan"), 0, -3, True])
def test_check_ttl_hours_refuses_what_cannot_be_stored(ttl: object) -> None:
    from claude_force_magic.errors import ConfigurationError
    from claude_force_magic.settings import check_ttl_hours

    with pytest.raises(ConfigurationError, match="my_ttl"):
        check_ttl_hours("my_ttl", ttl)


def test_check_ttl_hours_accepts_up_to_ten_years() -> None:
    from claude_force_magic.settings import MAX_TTL_HOURS, check_ttl_hours

    assert check_ttl_hours("ttl_hours", MAX_TTL_HOURS) == MAX_TTL_HOURS
    assert check_ttl_hours("ttl_hours", 0.5) == 0.5
    assert check_ttl_hours("ttl_hours", None, allow_none=True) is None
    assert MAX_TTL_HOURS >= 10 * 365 * 24


def test_ensure_private_dir_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    from claude_force_magic.errors import ConfigurationError
    from claude_force_magic.settings import ensure_private_dir

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigurationError, match="Could not create the directory"):
        ensure_private_dir(blocker / "cache")


def test_ensure_private_dir_expands_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from claude_force_magic.settings import ensure_private_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert ensure_private_dir("~/made") == tmp_path / "made"
    assert not (tmp_path / "~").exists()


def test_key_file_that_cannot_be_created_says_to_set_the_secret(
    small_fs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claude_force_magic.errors import SecretError
    from claude_force_magic.settings import load_cache_secret

    (small_fs.path / "config").mkdir(mode=0o700)
    small_fs.read_only()
    monkeypatch.setenv("CLAUDE_FORCE_MAGIC_CONFIG_DIR", str(small_fs.path / "config"))
    with pytest.raises(SecretError, match="CLAUDE_CACHE_SECRET"):
        load_cache_secret()
