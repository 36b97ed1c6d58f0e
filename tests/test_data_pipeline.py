import io
import shutil
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf
import yaml
from huggingface_hub import HfApi

from evoxtral.configs import DataGenArguments
from evoxtral.data.audio import load_audio
from evoxtral.data.generation import dataset as hub
from evoxtral.data.generation import pipeline
from evoxtral.data.generation.backends import SynthesisError
from evoxtral.data.generation.espeak import EspeakBackend
from evoxtral.scoring import tags as vocab

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (make system-deps)")
TAGS = ["sighs", "laughs", "whispers", "pause", "sad", "shouts"]


def _args(tmp_path, **overrides):
    settings = dict(output_dir=str(tmp_path / "run"), num_clips=24, tags=TAGS, min_support=1, seed=4)
    return DataGenArguments(**{**settings, **overrides})


def _sine_wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 220 * t), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@needs_espeak
def test_offline_run_builds_dataset_card_and_hub_folder(tmp_path):
    summary = pipeline.run(_args(tmp_path, dry_run=True))
    dataset = datasets.load_from_disk(summary.dataset_path)
    assert {split: len(ds) for split, ds in dataset.items()} == {"train": 19, "validation": 3, "test": 2}
    assert set(dataset["train"].column_names) == {
        "id", "audio", "tagged_text", "plain_text", "tags", "slice", "domain", "voice", "backend", "duration",
        "over_30s",
    }  # fmt: skip
    assert dataset["train"].features["audio"] == datasets.Audio(sampling_rate=16000)
    for split, ds in dataset.items():
        rows = ds.cast_column("audio", datasets.Audio(decode=False))
        assert Counter(tag for row in ds["tags"] for tag in row).keys() >= set(TAGS), split  # min_support 1
        for row in rows:
            assert row["plain_text"] == vocab.plain_text(row["tagged_text"])
            assert row["tags"] == vocab.tag_names(row["tagged_text"])
            audio = load_audio(row["audio"]["bytes"], sampling_rate=16000)
            assert abs(audio.size / 16000 - row["duration"]) < 0.01 and np.abs(audio).max() > 0.05
            assert row["backend"] == "espeak-ng" and not row["over_30s"]
    # the split is stratified by slice: the plain quarter of the clips is spread over the splits too
    assert Counter(dataset["train"]["slice"])["plain"] >= 4 and "plain" in dataset["validation"]["slice"]

    folder = Path(summary.hub_folder)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["README.md", *(f"data/{s}-00000-of-00001.parquet" for s in ("test", "train", "validation"))]
    card = (folder / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["license"] == "apache-2.0" and metadata["language"] == ["en"]
    assert metadata["task_categories"] == ["automatic-speech-recognition"]
    for split, ds in dataset.items():
        counts = Counter(tag for row in ds["tags"] for tag in row)
        column = list(dataset).index(split)
        for tag, count in counts.items():
            row = next(line for line in card.splitlines() if line.startswith(f"| `[{tag}]` |"))
            assert row.split("|")[2 + column].strip() == str(count), (tag, split)
    reloaded = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf_cache"))
    assert reloaded["test"]["tagged_text"] == dataset["test"]["tagged_text"]
    assert "24 clips" in summary.render()


@needs_espeak
def test_rerun_reuses_every_clip(tmp_path):
    first = pipeline.run(_args(tmp_path))
    texts = datasets.load_from_disk(first.dataset_path)["train"]["tagged_text"]
    second = pipeline.run(_args(tmp_path))
    assert (first.synthesized, second.synthesized, second.reused) == (24, 0, 24)
    assert datasets.load_from_disk(second.dataset_path)["train"]["tagged_text"] == texts
    assert len(list((tmp_path / "run" / "clips").glob("??/*.wav"))) == 24


class _FlakyBackend(EspeakBackend):
    """espeak-ng that answers badly for some scripts: always empty, or silent/corrupt before a good answer."""

    calls: Counter

    def synthesize(self, request):
        self.calls[request.text] += 1
        index = self.order.index(request.text)
        if index in self.broken:
            return b""
        if index == 1 and self.calls[request.text] == 1:
            buffer = io.BytesIO()
            sf.write(buffer, np.zeros(16000, dtype=np.float32), 16000, format="WAV")
            return buffer.getvalue()
        if index == 2 and self.calls[request.text] == 1:
            return b"RIFF garbage that is not audio"
        if index == 3:
            raise SynthesisError("voice rejected")
        return super().synthesize(request)


@needs_espeak
def test_bad_audio_is_retried_or_reported_and_skipped(tmp_path, monkeypatch):
    args = _args(tmp_path, retry_base_delay_s=0.0, max_attempts=3)
    plan = pipeline.load_or_make_plan(args, Path(args.output_dir))
    backend = _FlakyBackend(sounds_dir=tmp_path / "sounds")
    backend.calls, backend.order, backend.broken = Counter(), [s.tagged_text for s in plan.scripts], {0, 5}
    monkeypatch.setattr(pipeline, "make_backend", lambda *_: backend)
    summary = pipeline.run(args)
    assert sum(summary.clips.values()) == 21
    assert sorted(summary.failures) == sorted(plan.scripts[i].id for i in (0, 3, 5))
    assert "empty response (after 3 attempts)" in summary.failures[plan.scripts[0].id]
    assert summary.failures[plan.scripts[3].id] == "voice rejected"  # a permanent error is not retried
    assert backend.calls[backend.order[3]] == 1 and backend.calls[backend.order[1]] == 2
    assert "Failed clips: 3" in summary.render()
    backend.broken = set()  # the service recovers: a rerun fills the gaps and redoes nothing else
    backend.calls.clear()
    again = pipeline.run(args)
    assert (
        sum(again.clips.values()) == 23
        and again.synthesized == 2
        and set(backend.calls) == {backend.order[0], backend.order[3], backend.order[5]}
    )


def test_long_clips_are_kept_and_flagged():
    rows = [
        hub.ClipRow("a", "train", _sine_wav(1.0), "[sighs] Short one.", "light", "voicemail", "v", "test", 1.0),
        hub.ClipRow("b", "train", _sine_wav(31.0), "A long one.", "plain", "monologue", "v", "test", 31.0),
    ]
    dataset = hub.build_dataset_dict(rows)
    assert dataset["train"]["over_30s"] == [False, True]
    card = hub.render_card(dataset, pretty_name="t", license="cc-by-4.0", backend="test")
    assert "| train | 2 | 0.009 | 1 |" in card and "license: cc-by-4.0" in card


def test_push_uploads_exactly_the_dry_run_folder(tmp_path, monkeypatch):
    rows = [hub.ClipRow(str(i), split, _sine_wav(0.5), "[sighs] Hi.", "light", "voicemail", "v", "test", 0.5)
            for i, split in enumerate(["train", "train", "test"])]  # fmt: skip
    dataset = hub.build_dataset_dict(rows)
    folder = hub.write_hub_folder(
        dataset, tmp_path / "hub", hub.render_card(dataset, pretty_name="t", license="mit", backend="x")
    )
    calls = []
    monkeypatch.setattr(
        HfApi,
        "create_repo",
        lambda self, repo_id, **kw: calls.append(("create", self.token, repo_id, kw)) or f"https://hub/{repo_id}",
    )
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", self.token, kw)))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(RuntimeError, match="HF_TOKEN"):
        hub.push_to_hub(folder, "me/data")
    assert calls == []
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert hub.push_to_hub(folder, "me/data", private=True) == "https://hub/me/data"
    (_, token, repo, create_kwargs), (_, upload_token, upload_kwargs) = calls
    assert token == upload_token == "hf_secret" and repo == "me/data"
    assert create_kwargs["private"] is True and create_kwargs["repo_type"] == "dataset"
    assert upload_kwargs["folder_path"] == str(folder) and upload_kwargs["repo_type"] == "dataset"
    assert "hf_secret" not in "".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())
