"""The results: rows of one plain-text table, the figures the targets are checked against."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

COLUMNS = ("measure", "system", "setting", "result", "notes")


@dataclass(frozen=True)
class Row:
    measure: str
    system: str
    setting: str
    result: str
    notes: str = ""

    def cells(self) -> tuple[str, ...]:
        return (self.measure, self.system, self.setting, self.result, self.notes)


@dataclass(frozen=True)
class Target:
    """A figure we aim for: `value()` compared with `bound` (at least, or at most)."""

    name: str
    bound: float
    at_least: bool
    unit: str
    value: Callable[[dict[str, float]], float]

    def row(self, figures: dict[str, float]) -> Row:
        sign = ">=" if self.at_least else "<="
        wanted = f"{sign} {_number(self.bound)}{self.unit}"
        try:
            value = self.value(figures)
        except KeyError as missing:
            return Row("target", self.name, wanted, "n/a", f"not measured: {missing}")
        met = value >= self.bound if self.at_least else value <= self.bound
        return Row("target", self.name, wanted, f"{_number(value)}{self.unit}", _verdict(met))


@dataclass
class Report:
    """Everything measured in one run, in the order it was measured."""

    rows: list[Row] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def add(self, row: Row, key: str | None = None, figure: float | None = None) -> None:
        self.rows.append(row)
        if key is not None and figure is not None:
            self.figures[key] = figure
        print(" | ".join(cell for cell in row.cells() if cell), file=sys.stderr, flush=True)

    def table(self, targets: list[Target]) -> str:
        rows = self.rows + [target.row(self.figures) for target in targets]
        return format_table(rows)


def format_table(rows: list[Row]) -> str:
    """An aligned plain-text table, a rule between measures."""
    cells = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    rule = "-+-".join("-" * width for width in widths)

    def line(values: tuple[str, ...]) -> str:
        return " | ".join(value.ljust(width) for value, width in zip(values, widths, strict=True))

    out = [line(COLUMNS), rule]
    previous = None
    for row in rows:
        if previous is not None and row.measure != previous:
            out.append(rule)
        out.append(line(row.cells()))
        previous = row.measure
    return "\n".join(text.rstrip() for text in out)


def rate(value: float, unit: str = "jobs/s") -> str:
    return f"{value:,.0f} {unit}"


def millis(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _number(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}"


def _verdict(met: bool) -> str:
    return "PASS" if met else "MISS"
