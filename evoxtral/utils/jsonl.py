"""JSON Lines files that a run appends to as it goes, so a killed run resumes where it stopped.

A kill can cut the last line short. Readers skip such a line (its row is simply redone), and appending starts by
cutting the file back to its last complete line, so a new row never joins a half-written one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)


def read_jsonl(path: str | Path) -> list[dict]:
    """The complete rows of ``path`` in file order ([] when it does not exist); a line cut short is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("%s line %d is incomplete (a killed run); its row is redone", path, number)
    return rows


@contextmanager
def append_jsonl(path: str | Path) -> Iterator[TextIO]:
    """``path`` opened for appending rows (see ``write_row``), cut back to its last complete line first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with path.open("r+b") as handle:
                handle.truncate(end)
    with path.open("a", encoding="utf-8") as handle:
        yield handle


def write_row(handle: TextIO, row: dict) -> None:
    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
