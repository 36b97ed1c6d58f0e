"""Editing and export: the segments as an editable table and back, and the files a user downloads (SRT and WebVTT
with the tags kept, the server's native JSON, and ElevenLabs v3 text for re-synthesis with the same delivery).

The subtitle and JSON writers are the server's (`evoxtral.serving.results`), so a file from the studio is the file
the API would have answered.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from evoxtral.scoring.tags import TAG_PATTERN, bracket_errors, canonical_tag
from evoxtral.serving.results import TimedText, native_result, srt, vtt

TABLE_HEADERS = ["start", "end", "speaker", "text"]
EXPORT_FORMATS = ("srt", "vtt", "json", "elevenlabs")
EXPORT_SUFFIXES = {"srt": ".srt", "vtt": ".vtt", "json": ".json", "elevenlabs": ".txt"}


class EditError(ValueError):
    """An edited table the studio cannot turn back into segments; the message names the row."""


def segments_to_rows(segments: Sequence[TimedText]) -> list[list]:
    return [[round(s.start, 3), round(s.end, 3), s.speaker or "", s.text.strip()] for s in segments]


def _number(value, row: int, column: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise EditError(f"Row {row}: {column} must be a number of seconds, got {value!r}.") from error
    if not math.isfinite(number) or number < 0:
        raise EditError(f"Row {row}: {column} must be a non-negative number of seconds, got {value!r}.")
    return number


def rows_to_segments(rows) -> list[TimedText]:
    """The edited table (a list of rows or a pandas DataFrame) back into segments; rows left blank are dropped.
    Raises EditError for times that are not numbers or end before they start, and for broken brackets, so an
    export never carries a tag the reader cannot parse."""
    if hasattr(rows, "values") and hasattr(rows, "columns"):
        rows = rows.values.tolist()
    segments = []
    for row_number, row in enumerate(rows or [], start=1):
        cells = list(row) + [""] * (len(TABLE_HEADERS) - len(row))
        start, end, speaker, text = cells[:4]
        text = "" if text is None else str(text).strip()
        if not text and (start in ("", None) or end in ("", None)):
            continue
        start, end = _number(start, row_number, "start"), _number(end, row_number, "end")
        if end < start:
            raise EditError(f"Row {row_number}: end ({end:g} s) is before start ({start:g} s).")
        problems = bracket_errors(text)
        if problems:
            raise EditError(f"Row {row_number}: {problems[0]} in {text!r}. Tags are written [like this].")
        speaker = None if speaker is None or not str(speaker).strip() else str(speaker).strip()
        segments.append(TimedText(start, end, text, speaker=speaker))
    return segments


def elevenlabs_v3_text(segments: Sequence[TimedText]) -> str:
    """Text ready for ElevenLabs v3: each tag under its canonical name (aliases such as [laughing] become
    [laughs], a compound tag keeps its modifier), CAPITALISED emphasis kept, one line per segment, and a line per
    change of speaker ("Speaker 1: ...") when the transcript has speakers. Unknown tags are kept as written: v3
    reads free-form tags."""

    def canonical(match) -> str:
        tag = canonical_tag(match.group(1))
        if not tag.name:
            return ""
        if not tag.known:
            return match.group(0)
        return f"[{tag.name}{' ' + tag.modifier if tag.modifier else ''}]"

    lines = []
    previous_speaker = None
    for segment in segments:
        text = " ".join(TAG_PATTERN.sub(canonical, segment.text).split())
        if not text:
            continue
        if segment.speaker and segment.speaker != previous_speaker:
            lines.append(f"{segment.speaker}: {text}")
        elif segment.speaker and lines:
            lines[-1] += f" {text}"
        else:
            lines.append(text)
        previous_speaker = segment.speaker
    return "\n".join(lines) + ("\n" if lines else "")


def export_text(segments: Sequence[TimedText], fmt: str, duration: float, language: str | None, model: str) -> str:
    segments = list(segments)
    if fmt == "srt":
        return srt(segments)
    if fmt == "vtt":
        return vtt(segments)
    if fmt == "json":
        return json.dumps(native_result(segments, duration, language, model), indent=2, ensure_ascii=False) + "\n"
    if fmt == "elevenlabs":
        return elevenlabs_v3_text(segments)
    raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")


def write_export(
    segments: Sequence[TimedText], fmt: str, directory: Path, stem: str, duration: float, language: str | None,
    model: str,
) -> Path:  # fmt: skip
    path = Path(directory) / f"{stem}{EXPORT_SUFFIXES[fmt]}"
    path.write_text(export_text(segments, fmt, duration, language, model), encoding="utf-8")
    return path
