"""From finished clips to a ``datasets.DatasetDict``, its dataset card, and the folder that goes to the Hub.

The Hub folder (README.md card + one parquet file per split) is written by one function; a dry run stops
there, and ``push_to_hub`` uploads that very folder, so what a dry run shows is exactly what would be pushed.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, DatasetCardData, HfApi

from evoxtral.data.generation.backends import SAMPLING_RATE
from evoxtral.data.generation.slices import SLICES, SPLITS
from evoxtral.scoring import tags as vocab

LONG_CLIP_S = 30.0  # Voxtral reads audio in 30 s chunks: longer clips cost a second chunk

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
        "tagged_text": datasets.Value("string"),
        "plain_text": datasets.Value("string"),
        "tags": datasets.List(datasets.Value("string")),
        "slice": datasets.Value("string"),
        "domain": datasets.Value("string"),
        "voice": datasets.Value("string"),
        "backend": datasets.Value("string"),
        "duration": datasets.Value("float32"),
        "over_30s": datasets.Value("bool"),
    }
)


@dataclass
class ClipRow:
    id: str
    split: str
    wav_bytes: bytes  # 16 kHz mono PCM WAV
    tagged_text: str
    slice: str
    domain: str
    voice: str
    backend: str
    duration: float


def build_dataset_dict(rows: Sequence[ClipRow], long_clip_s: float = LONG_CLIP_S) -> datasets.DatasetDict:
    """One Dataset per split present, in train/validation/test order, audio as a 16 kHz ``Audio`` column.

    The audio is stored as WAV bytes and cast to ``Audio`` without re-encoding, so building needs no audio
    codec; reading decoded arrays back needs torchcodec, or ``Audio(decode=False)`` plus
    ``evoxtral.data.audio.load_audio`` on the bytes.
    """
    splits = {}
    for split in sorted({row.split for row in rows}, key=lambda s: (SPLITS + (s,)).index(s)):
        members = sorted((row for row in rows if row.split == split), key=lambda row: row.id)
        columns = {
            "id": [row.id for row in members],
            "audio": [{"bytes": row.wav_bytes, "path": f"{row.id}.wav"} for row in members],
            "tagged_text": [row.tagged_text for row in members],
            "plain_text": [vocab.plain_text(row.tagged_text) for row in members],
            "tags": [vocab.tag_names(row.tagged_text) for row in members],
            "slice": [row.slice for row in members],
            "domain": [row.domain for row in members],
            "voice": [row.voice for row in members],
            "backend": [row.backend for row in members],
            "duration": [round(row.duration, 3) for row in members],
            "over_30s": [row.duration > long_clip_s for row in members],
        }
        dataset = datasets.Dataset.from_dict(columns, features=FEATURES, split=datasets.NamedSplit(split))
        splits[split] = dataset.cast_column("audio", datasets.Audio(sampling_rate=SAMPLING_RATE))
    return datasets.DatasetDict(splits)


def tag_counts_per_split(dataset: datasets.DatasetDict) -> dict[str, Counter]:
    return {split: Counter(tag for row_tags in ds["tags"] for tag in row_tags) for split, ds in dataset.items()}


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return label
    return "100K<n<1M"


def render_card(
    dataset: datasets.DatasetDict,
    *,
    pretty_name: str,
    license: str,
    backend: str,
    description: str = "",
    origin: str = "",
    synthetic: bool = True,
) -> str:
    """README.md for the dataset: YAML metadata (license, task, language, configs), where the audio and text came
    from (``origin``), and tag counts per split."""
    counts = tag_counts_per_split(dataset)
    split_names = list(dataset)
    total = sum(len(ds) for ds in dataset.values())
    data = DatasetCardData(
        license=license,
        language=["en"],
        task_categories=["automatic-speech-recognition"],
        size_categories=[_size_category(total)],
        pretty_name=pretty_name,
        tags=["expressive-transcription", "audio-tags", "elevenlabs-v3-tags", "synthetic" if synthetic else "recorded"]
        + [backend],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*.parquet"} for split in split_names],
            }
        ],
    )
    hours = {split: sum(ds["duration"]) / 3600 for split, ds in dataset.items()}
    default_description = (
        "Synthetic speech with inline ElevenLabs v3 audio tags and CAPITALISED emphasis, for expressive "
        "tagged transcription: the model hears the audio and writes the tagged text."
        if synthetic
        else "Recorded speech with its transcripts (ElevenLabs v3 audio tags inline where the transcripts carry "
        "them), in the schema of the Evoxtral recipes."
    )
    lines = [f"# {pretty_name}", "", description or default_description, ""]
    if origin:
        lines += [f"Source: {origin}.", ""]
    lines += [
        "## Splits",
        "",
        "| split | clips | hours | clips over 30 s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for split, ds in dataset.items():
        lines.append(f"| {split} | {len(ds)} | {hours[split]:.3f} | {sum(ds['over_30s'])} |")
    lines += ["", "## Tag counts per split", "", "| tag | " + " | ".join(split_names) + " |"]
    lines.append("| --- |" + " ---: |" * len(split_names))
    for name in sorted({tag for counter in counts.values() for tag in counter}):
        lines.append(f"| `[{name}]` | " + " | ".join(str(counts[split][name]) for split in split_names) + " |")
    lines += ["", "## Density slices per split", "", "| slice | " + " | ".join(split_names) + " |"]
    lines.append("| --- |" + " ---: |" * len(split_names))
    slices = {split: Counter(ds["slice"]) for split, ds in dataset.items()}
    for name in [*SLICES, *sorted({s for c in slices.values() for s in c} - set(SLICES))]:
        if any(slices[split][name] for split in split_names):
            lines.append(f"| {name} | " + " | ".join(str(slices[split][name]) for split in split_names) + " |")
    lines += [
        "",
        "## Columns",
        "",
        "`audio` (16 kHz), `tagged_text` (the target), `plain_text` (tags removed, emphasis re-cased), `tags` "
        "(canonical names in order), `slice` (tag density), `domain`, `voice`, `backend`, `duration` (seconds), "
        "`over_30s` (longer than one Voxtral audio chunk).",
        "",
        f"{'Speech backend' if synthetic else 'Audio'}: `{backend}`. Built with `data_gen/generate.py` from the "
        "Evoxtral recipes.",
    ]
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"))


def write_hub_folder(dataset: datasets.DatasetDict, folder: str | Path, card: str) -> Path:
    """Exactly what ``push_to_hub`` uploads: README.md and data/<split>-00000-of-00001.parquet per split."""
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "data").mkdir(parents=True)
    for split, ds in dataset.items():
        ds.to_parquet(str(staging / "data" / f"{split}-00000-of-00001.parquet"))
    (staging / "README.md").write_text(card, encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def save_dataset(dataset: datasets.DatasetDict, path: str | Path) -> Path:
    """``save_to_disk`` into a staging folder renamed into place, so a killed run never leaves half a dataset."""
    path = Path(path)
    staging = path.with_name(path.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    dataset.save_to_disk(str(staging))
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)
    return path


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = True) -> str:
    """Upload the folder ``write_hub_folder`` wrote to a dataset repo; the token comes from HF_TOKEN only."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise RuntimeError("pushing to the Hub needs a token in the HF_TOKEN environment variable")
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type="dataset", commit_message="Upload Evoxtral tagged speech"
    )
    return str(url)
