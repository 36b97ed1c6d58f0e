"""Recorded speech as a data source: an audio folder with transcripts, or a ``datasets`` dataset with audio and text
columns, turned into exactly the dataset the recipes read (``dataset.FEATURES``: 16 kHz ``audio``, ``tagged_text``,
``plain_text``, ``tags``, ``duration``, ``over_30s`` ...).

Nothing is synthesised: each recording is decoded with ``evoxtral.data.audio.load_audio`` (any rate, wav, flac, ogg,
mp3), resampled to 16 kHz mono and stored as WAV bytes. Transcripts go through the same rules as a user's script file
(``scripts.malformed_issues``: only malformed text is rejected; tags outside the set are kept and reported). A missing,
corrupt or empty file is reported with its reason and skipped; the rest of the run goes on.

Audio folder (``source: audio_folder``), the ``datasets`` audiofolder convention: ``metadata.csv``, ``.jsonl`` or
``.json`` next to the audio with a ``file_name`` column (relative to ``audio_dir``) and the transcript column
(``text_column``), optional ``id``, ``split``, ``domain``, ``speaker``. A ``.txt`` or ``.txt.gz`` list of
``<file name>: <transcript>`` lines (``;`` comments, the name with or without its extension) is read too: the prompt
lists that ship with speech packages (the Asterisk prompts' ``core-sounds-en.txt``) look like that.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from tqdm.auto import tqdm

from evoxtral.data.audio import SAMPLING_RATE, AudioDecodeError, decode_audio_value, encode_wav, load_audio
from evoxtral.data.generation.dataset import ClipRow
from evoxtral.data.generation.scripts import malformed_issues, script_warnings, stratified_split
from evoxtral.data.generation.slices import DEFAULT_SPLIT_RATIOS, slice_for_tag_count
from evoxtral.data.splits import keep_audio_undecoded
from evoxtral.scoring import tags as vocab

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus")
METADATA_NAMES = ("metadata.csv", "metadata.jsonl", "metadata.json")
MISSING_FILE, UNREADABLE, NO_TRANSCRIPT = "missing audio file", "unreadable audio", "no transcript"


@dataclass
class Recording:
    id: str
    where: str  # where it was listed, for reports: "metadata.csv:12", "train[3]"
    audio: Any  # a path, or a datasets audio value ({"bytes", "path"})
    tagged_text: str
    split: str | None = None
    domain: str = "unknown"
    speaker: str = ""


@dataclass
class RecordingSet:
    """What a source lists, before any audio is decoded, and what it had to leave out."""

    origin: str  # where the data came from, in words (goes on the card)
    backend: str  # the value of the dataset's `backend` column: "recording" or "hub"
    recordings: list[Recording] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    rejected_reasons: Counter = field(default_factory=Counter)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    warning_reasons: Counter = field(default_factory=Counter)

    def reject(self, where: str, reason: str, detail: str | None = None) -> None:
        self.rejected.append((where, detail or reason))
        self.rejected_reasons[reason] += 1

    def add(self, recording: Recording, allowed_tags: Sequence[str] | None) -> None:
        """Keep a recording whose transcript is well formed (warnings noted), reject it otherwise."""
        text = recording.tagged_text
        issues = malformed_issues(text)
        if issues:
            self.rejected.append((recording.where, f"{recording.id}: " + "; ".join(i.detail for i in issues)))
            self.rejected_reasons.update({issue.reason for issue in issues})
            return
        for issue in script_warnings(text, allowed_tags):
            self.warnings.append((recording.where, issue.detail))
            self.warning_reasons[issue.reason] += 1
        self.recordings.append(recording)


# --- Audio folder ----------------------------------------------------------------------------------------------


def find_metadata(audio_dir: Path) -> Path:
    for name in METADATA_NAMES:
        if (audio_dir / name).is_file():
            return audio_dir / name
    raise FileNotFoundError(f"{audio_dir} has none of {', '.join(METADATA_NAMES)}: name one with metadata_file")


def read_metadata(path: Path, text_column: str) -> list[tuple[str, dict | None]]:
    """(where, record) for each entry of a metadata file; ``None`` for a line that is not a record."""
    kind = (path.with_suffix("") if path.suffix == ".gz" else path).suffix.lower()
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = raw.decode("utf-8-sig")
    if kind == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        return [(f"{path.name}:{number}", row) for number, row in enumerate(reader, start=2)]
    if kind == ".jsonl":
        entries = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    record = None
                entries.append((f"{path.name}:{number}", record if isinstance(record, dict) else None))
        return entries
    if kind == ".json":
        data = json.loads(text)
        data = data.get("data", data) if isinstance(data, dict) else data
        return [(f"{path.name}[{i}]", r if isinstance(r, dict) else None) for i, r in enumerate(data)]
    if kind == ".txt":
        entries = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith(";"):
                continue
            name, colon, transcript = line.partition(":")
            record = {"file_name": name.strip(), text_column: transcript.strip()} if colon else None
            entries.append((f"{path.name}:{number}", record))
        return entries
    raise ValueError(f"{path}: metadata must be .csv, .jsonl, .json or .txt (optionally .gz)")


def _resolve_audio(audio_dir: Path, file_name: str) -> Path | None:
    candidate = audio_dir / file_name
    if candidate.is_file():
        return candidate
    if candidate.suffix.lower() not in AUDIO_EXTENSIONS:  # a name listed without its extension
        for extension in AUDIO_EXTENSIONS:
            if candidate.with_name(candidate.name + extension).is_file():
                return candidate.with_name(candidate.name + extension)
    return None


def list_audio_folder(
    audio_dir: str | Path,
    metadata_file: str | Path | None = None,
    *,
    text_column: str = "tagged_text",
    allowed_tags: Sequence[str] | None = None,
) -> RecordingSet:
    """Every recording a metadata file lists under ``audio_dir``; missing files and malformed transcripts are
    reported and left out."""
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"audio_dir {audio_dir} is not a folder")
    metadata = Path(metadata_file) if metadata_file else find_metadata(audio_dir)
    found = RecordingSet(f"audio folder `{audio_dir}`, transcripts from `{metadata}`", "recording")
    seen: set[str] = set()
    for where, record in read_metadata(metadata, text_column):
        if record is None:
            found.reject(where, "not a record", "not a metadata record")
            continue
        file_name = (record.get("file_name") or "").strip()
        text = record.get(text_column)
        if not file_name:
            found.reject(where, "no file_name")
            continue
        if not isinstance(text, str):
            found.reject(where, NO_TRANSCRIPT, f"{file_name}: no {text_column!r} column")
            continue
        path = _resolve_audio(audio_dir, file_name)
        if path is None:
            found.reject(where, MISSING_FILE, f"{file_name}: no such audio file under {audio_dir}")
            continue
        recording_id = str(record.get("id") or Path(file_name).with_suffix("").as_posix())
        if recording_id in seen:
            found.reject(where, "duplicate id", f"{recording_id} is listed twice")
            continue
        seen.add(recording_id)
        recording = Recording(
            recording_id, where, str(path), text, record.get("split") or None,
            record.get("domain") or "unknown", record.get("speaker") or "",
        )  # fmt: skip
        found.add(recording, allowed_tags)
    return found


# --- A datasets dataset (the Hub or a local folder) -----------------------------------------------------------------


def list_dataset(
    name: str,
    *,
    config: str | None = None,
    splits: Sequence[str] | None = None,
    audio_column: str = "audio",
    text_column: str = "tagged_text",
    id_column: str = "id",
    allowed_tags: Sequence[str] | None = None,
) -> RecordingSet:
    """The rows of a Hub dataset id, or of a ``save_to_disk`` / data folder, with their audio undecoded; a row without
    a transcript or audio, or with a malformed transcript, is reported and left out. Split names are kept."""
    saved = any((Path(name) / marker).is_file() for marker in ("dataset_dict.json", "state.json"))
    if os.path.isdir(name) and saved:  # a save_to_disk folder; any other folder goes to load_dataset (audiofolder ...)
        loaded = datasets.load_from_disk(name)
    else:
        loaded = datasets.load_dataset(name, config)
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    wanted = list(splits) if splits else list(loaded)
    absent = [split for split in wanted if split not in loaded]
    if absent:
        raise ValueError(f"{name} has splits {list(loaded)}, not {absent}")
    found = RecordingSet(f"the datasets dataset `{name}`" + (f" (config `{config}`)" if config else ""), "hub")
    for split in wanted:
        table = loaded[split]
        missing = {audio_column, text_column} - set(table.column_names)
        if missing:
            raise KeyError(f"{name} split {split} lacks column(s) {sorted(missing)}; it has {table.column_names}")
        table = keep_audio_undecoded(table, audio_column)
        ids = table[id_column] if id_column in table.column_names else [f"{split}-{i:06d}" for i in range(len(table))]
        for index, (clip_id, audio, text) in enumerate(zip(ids, table[audio_column], table[text_column])):
            where = f"{split}[{index}]"
            if audio is None or (isinstance(audio, dict) and not (audio.get("bytes") or audio.get("path"))):
                found.reject(where, "no audio", "no audio in the row")
            elif not isinstance(text, str):
                found.reject(where, NO_TRANSCRIPT, f"no {text_column!r} text")
            else:
                found.add(Recording(str(clip_id), where, audio, text, split), allowed_tags)
    return found


# --- Decoding into dataset rows ---------------------------------------------------------------------------------


def decode_recordings(
    found: RecordingSet, *, split_ratios: dict[str, float] | None = None, seed: int = 0, workers: int = 2
) -> tuple[list[ClipRow], dict[str, str]]:
    """ClipRows (16 kHz WAV bytes) for every recording that decodes, and ``{id: why}`` for each that does not.

    Recordings without a split of their own are split by ``split_ratios``, seeded and stratified by slice.
    """
    slices = [slice_for_tag_count(len(vocab.extract_tags(r.tagged_text))) for r in found.recordings]
    unsplit = [i for i, r in enumerate(found.recordings) if not r.split]
    drawn = stratified_split([slices[i] for i in unsplit], split_ratios or DEFAULT_SPLIT_RATIOS, seed)
    splits = [r.split for r in found.recordings]
    for index, split in zip(unsplit, drawn):
        splits[index] = split

    def decode(recording: Recording):
        try:
            audio = (
                load_audio(recording.audio)
                if isinstance(recording.audio, str)
                else decode_audio_value(recording.audio)
            )
        except (AudioDecodeError, OSError) as error:
            return None, str(error)
        return audio, None

    rows, failures = [], {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        decoded = pool.map(decode, found.recordings)
        for index, (audio, error) in enumerate(tqdm(decoded, total=len(found.recordings), desc="audio", unit="clip")):
            recording = found.recordings[index]
            if audio is None:
                failures[recording.id] = f"{recording.where}: {error}"
                continue
            rows.append(
                ClipRow(
                    recording.id, splits[index], encode_wav(audio), recording.tagged_text, slices[index],
                    recording.domain, recording.speaker, found.backend, audio.size / SAMPLING_RATE,
                )
            )  # fmt: skip
    return rows, failures
