"""engine/account.py: a signed, append-only, process-safe spend ledger behind Budget.persistent."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from claude_force_magic.engine.account import SpendAccount, SpendAccountWarning
from claude_force_magic.engine.budget import Budget
from claude_force_magic.errors import BudgetExceededError, ConfigurationError

SECRET = "a-test-secret-of-enough-length-0123456789"


def _account(path: Path, **kwargs: object) -> SpendAccount:
    return SpendAccount(path, secret=SECRET, **kwargs)  # type: ignore[arg-type]


def test_spend_survives_a_new_account_object_and_reset_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "spend.jsonl"
    first = _account(path)
    first.charge(0.25)
    first.charge(0.5)
    first.charge(0)  # nothing to record
    assert _account(path).spent() == pytest.approx(0.75)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    second = _account(path)
    second.reset()
    assert first.spent() == 0.0  # the other object sees the reset too
    first.charge(0.125)
    assert second.spent() == pytest.approx(0.125)


def test_budget_persistent_survives_restart_and_refuses_past_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "spend.jsonl"
    budget = Budget.persistent(path, limit_usd=1.0, secret=SECRET)
    r = budget.reserve(0.6, model="m")
    budget.settle(r, 0.6)
    again = Budget.persistent(path, limit_usd=1.0, secret=SECRET)  # a restarted kernel
    assert again.spent == pytest.approx(0.6)
    with pytest.raises(BudgetExceededError):
        again.reserve(0.5, model="m")
    again.reset()
    again.reserve(0.5, model="m")
    assert Budget().account is None and Budget().window == "session"


def test_an_edited_record_is_detected_warned_once_and_refuses_until_reset(tmp_path: Path) -> None:
    path = tmp_path / "spend.jsonl"
    _account(path).charge(0.9)
    _account(path).charge(0.05)
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    record["usd"] = 0.0001  # lower the spend
    lines[0] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    budget = Budget.persistent(path, limit_usd=5.0, secret=SECRET)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(BudgetExceededError, match="cannot be trusted"):
            budget.reserve(0.01, model="m")
        with pytest.raises(BudgetExceededError):
            budget.reserve(0.01, model="m")
    damage = [w for w in caught if issubclass(w.category, SpendAccountWarning)]
    assert len(damage) == 1, "warned once"
    assert "signature" in str(damage[0].message)
    budget.reset()
    assert budget.account is not None and budget.account.damaged is None
    budget.reserve(0.01, model="m")


@pytest.mark.parametrize("damage", ["cut_mid_line", "delete_middle", "forged_line"])
def test_truncation_deletion_and_forgery_are_detected(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "spend.jsonl"
    account = _account(path)
    for usd in (0.1, 0.2, 0.3):
        account.charge(usd)
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    if damage == "cut_mid_line":
        path.write_bytes(data[: len(data) - 20])
    elif damage == "delete_middle":
        path.write_bytes(lines[0] + lines[2])
    else:
        forged = json.loads(lines[1])
        forged["mac"] = "0" * 64
        path.write_bytes(lines[0] + json.dumps(forged).encode() + b"\n" + lines[2])
    with pytest.warns(SpendAccountWarning):
        fresh = _account(path)
        assert fresh.damaged is not None
    fresh.charge(0.4)  # appending after damage keeps the file usable
    fresh.reset()
    fresh.charge(0.5)
    assert fresh.damaged is None
    assert _account(path).spent() == pytest.approx(0.5)


def test_a_process_that_read_the_records_notices_the_tail_removed(tmp_path: Path) -> None:
    path = tmp_path / "spend.jsonl"
    account = _account(path)
    account.charge(0.1)
    account.charge(0.2)
    assert account.spent() == pytest.approx(0.3)
    path.write_bytes(path.read_bytes().splitlines(keepends=True)[0])
    with pytest.warns(SpendAccountWarning, match="truncated"):
        assert account.damaged is not None


def test_a_wrong_secret_cannot_read_the_spend_as_zero(tmp_path: Path) -> None:
    path = tmp_path / "spend.jsonl"
    _account(path).charge(1.0)
    with pytest.warns(SpendAccountWarning):
        other = SpendAccount(path, secret="another-secret-of-enough-length-987654")
        assert other.damaged is not None


_CHILD = """
import sys
from claude_force_magic.engine.account import SpendAccount
account = SpendAccount(sys.argv[1], secret=sys.argv[2])
for _ in range(int(sys.argv[3])):
    account.charge(0.001)
"""


def _children(path: Path, n: int, count: int) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _CHILD, str(path), SECRET, str(count)])
        for _ in range(n)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * n


def test_two_processes_appending_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "spend.jsonl"
    _children(path, 2, 150)
    account = _account(path)
    assert account.damaged is None
    assert account.spent() == pytest.approx(0.3)
    assert len(path.read_text().splitlines()) == 300


def test_windows_total_session_and_day(tmp_path: Path) -> None:
    path = tmp_path / "spend.jsonl"
    _children(path, 1, 10)  # another session (another process): 0.01
    now = [1_800_000_000.0]
    mine = _account(path, window="session", clock=lambda: now[0])
    mine.charge(0.5)
    assert mine.spent() == pytest.approx(0.5)
    mine.set_window("total")
    assert mine.spent() == pytest.approx(0.51)
    mine.set_window("day")
    now[0] += 2 * 86_400  # two days later nothing of that counts
    assert mine.spent() == 0.0
    mine.charge(0.25)
    assert mine.spent() == pytest.approx(0.25)
    with pytest.raises(ConfigurationError, match="day = since local midnight"):
        mine.set_window("week")


def test_an_unwritable_directory_keeps_the_charge_in_memory_with_a_warning(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    account = _account(blocked / "spend.jsonl")
    with pytest.warns(SpendAccountWarning, match="could not be written"):
        account.charge(0.2)
    with pytest.warns(SpendAccountWarning, match="could not be read"):
        assert account.spent() == pytest.approx(0.2)


def test_a_symlinked_directory_is_refused_like_the_cache_does(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    account = _account(link / "spend.jsonl")
    with pytest.warns(SpendAccountWarning, match="symlink"):
        account.charge(0.3)
    assert not (real / "spend.jsonl").exists()
    assert account.spent() == pytest.approx(0.3)  # still counted, in memory
