"""One titled table of a report, apart from report.py so that the modules that build sections need not import it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Section:
    """One titled table; `align` has an l or r per column (default: first left, the rest right)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    align: str = ""

    def __post_init__(self) -> None:
        self.align = self.align or "l" + "r" * (len(self.columns) - 1)
