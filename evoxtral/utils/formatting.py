"""How numbers and settings read in reports, model cards and summaries."""

from __future__ import annotations

import math
from typing import Any


def percent(value: float | None, decimals: int = 2) -> str:
    """A rate as a percentage ("12.50%"), "n/a" when it was not measured."""
    return "n/a" if value is None else f"{100 * value:.{decimals}f}%"


def duration(seconds: float | None) -> str:
    """ "7 min 03 s" from a minute up, "4.2 s" below, "—" when it was not measured."""
    if seconds is None:
        return "—"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def key_value_table(values: dict[str, Any]) -> str:
    """A two-column markdown table, one row per key; floats to 4 significant digits."""
    cells = (f"{value:.4g}" if isinstance(value, float) else str(value) for value in values.values())
    return "| | |\n| --- | --- |\n" + "\n".join(f"| {key} | {cell} |" for key, cell in zip(values, cells))
