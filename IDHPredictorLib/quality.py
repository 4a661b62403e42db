"""Quality checks whose verdicts travel with every result: pass, warn or fail, with the reason.

A check that fails stops the run with one ``InputError`` listing every failed check (a wrong
mask must never be returned silently); warnings are printed and stored beside the result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from .errors import InputError

Verdict = Literal["pass", "warn", "fail"]


@dataclass
class QualityCheck:
    """One check: what was measured, the verdict and a sentence a radiologist can act on."""

    name: str
    verdict: Verdict
    message: str
    value: float | str | None = None

    def line(self) -> str:
        """``[WARN] brain volume: ...`` for the terminal and the Slicer panel."""
        return f"[{self.verdict.upper()}] {self.name.replace('_', ' ')}: {self.message}"


@dataclass
class QualityReport:
    """The checks of one case, in the order they ran."""

    checks: list[QualityCheck] = field(default_factory=list)

    def add(self, name: str, verdict: Verdict, message: str, value: float | str | None = None) -> QualityCheck:
        """Record a check and return it."""
        check = QualityCheck(name, verdict, message, value)
        self.checks.append(check)
        return check

    def extend(self, other: QualityReport) -> None:
        """Append another report's checks."""
        self.checks.extend(other.checks)

    @property
    def verdict(self) -> Verdict:
        """The worst verdict of all checks (``pass`` when there are none)."""
        verdicts = {c.verdict for c in self.checks}
        return "fail" if "fail" in verdicts else "warn" if "warn" in verdicts else "pass"

    def problems(self) -> list[QualityCheck]:
        """Checks that warned or failed."""
        return [c for c in self.checks if c.verdict != "pass"]

    def lines(self) -> list[str]:
        """Every check as a display line."""
        return [c.line() for c in self.checks]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: overall verdict and every check."""
        return {"verdict": self.verdict, "checks": [asdict(c) for c in self.checks]}

    @classmethod
    def from_dict(cls, record: dict) -> QualityReport:
        """The report ``as_dict`` wrote."""
        return cls([QualityCheck(**check) for check in record.get("checks", [])])

    def raise_if_failed(self, source: object) -> None:
        """Refuse the case (``InputError`` naming ``source``) when any check failed."""
        failed = [c for c in self.checks if c.verdict == "fail"]
        if failed:
            reasons = "; ".join(f"{c.name.replace('_', ' ')}: {c.message}" for c in failed)
            raise InputError(source, f"refused by quality control ({reasons})",
                             "Fix the input as the check says; nothing was written")
