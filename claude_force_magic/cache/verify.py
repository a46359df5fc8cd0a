"""The report returned by :meth:`ResponseCache.verify`."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["VerifyReport"]


@dataclass
class VerifyReport:
    """What one :meth:`ResponseCache.verify` pass found and did.

    ``checked`` entries were read; ``valid`` passed their signature and are not expired;
    ``expired`` were past their signed expiry and removed; ``invalid`` lists
    ``(key, reason)`` for entries that failed a check and were removed; ``removed`` is
    ``expired + len(invalid)``; ``orphans_removed`` counts value files no entry referred to
    (left by a writer killed between writing the file and committing its row).
    """

    checked: int = 0
    valid: int = 0
    expired: int = 0
    invalid: list[tuple[str, str]] = field(default_factory=list)
    removed: int = 0
    orphans_removed: int = 0

    @property
    def ok(self) -> bool:
        """True when no entry failed its integrity check."""
        return not self.invalid

    def __repr__(self) -> str:
        shown = ", ".join(f"{key[:12]}…: {reason}" for key, reason in self.invalid[:5])
        more = f" (+{len(self.invalid) - 5} more)" if len(self.invalid) > 5 else ""
        invalid = f"[{shown}{more}]" if self.invalid else "[]"
        return (
            f"VerifyReport(checked={self.checked}, valid={self.valid}, expired={self.expired}, "
            f"invalid={len(self.invalid)} {invalid}, removed={self.removed}, "
            f"orphans_removed={self.orphans_removed})"
        )
