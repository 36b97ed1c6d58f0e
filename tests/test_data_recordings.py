"""Bring your own data: recordings (an audio folder, a datasets dataset), a user's script file through the whole run,
weighted dataset mixtures, and the Asterisk prompts as a real-speech test set."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from conftest import encode, noise_clip, tone

from evoxtral.configs import DataGenArguments, WeightedMixture, make_sft_parser
from evoxtral.data.audio import load_audio
from evoxtral.data.generation import dataset as hub
from evoxtral.data.generation import pipeline, recordings
from evoxtral.data.generation import scripts as sc
from evoxtral.data.splits import load_training_splits
from evoxtral.scoring import tags as vocab

ASTERISK_AUDIO = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
REPO = Path(__file__).resolve().parents[1]


def _audio_folder(root: Path) -> Path:
    """Recordings at other rates and formats, a corrupt file, an empty one, a missing one, a 40 s one."""
    root.mkdir()
    (root / "calls").mkdir()
    (root / "calls" / "hello.wav").write_bytes(encode(tone(1.5, 220, 8000), 8000))
    (root / "laugh.flac").write_bytes(encode(tone(2.0, 330, 44100, channels=2), 44100, "FLAC"))
    (root / "long.wav").write_bytes(encode(noise_clip(40.0), 16000))
    (root / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio at all")
    (root / "empty.ogg").write_bytes(b"")
    (root / "bad_text.wav").write_bytes(encode(tone(1.0, 440, 16000), 16000))
    rows = [
        ("calls/hello.wav", "Hello, thanks for calling.", "test"),
        ("laugh.flac", "[laughs] That was GREAT. [confused]", ""),
        ("long.wav", "A very long voicemail [sighs] that goes on and on.", ""),
        ("broken.wav", "This file is not audio.", ""),
        ("empty.ogg", "Nothing was recorded.", ""),
        ("missing.wav", "This file was never copied.", ""),
        ("bad_text.wav", "[sighs Unclosed bracket.", ""),
    ]
    lines = ["file_name,tagged_text,split"] + [f'{name},"{text}",{split}' for name, text, split in rows]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_an_audio_folder_becomes_the_recipes_dataset_with_bad_files_reported(tmp_path):
    folder = _audio_folder(tmp_path / "recordings")
    args = DataGenArguments(
        output_dir=str(tmp_path / "run"), source="audio_folder", audio_dir=str(folder),
        split_ratios={"train": 1.0}, dry_run=True,
    )  # fmt: skip
    summary = pipeline.run(args)
    dataset = datasets.load_from_disk(summary.dataset_path)
    assert {split: ds["id"] for split, ds in dataset.items()} == {"train": ["laugh", "long"], "test": ["calls/hello"]}
    assert list(dataset["train"].features) == list(hub.FEATURES)
    assert dataset["train"].features["audio"] == datasets.Audio(sampling_rate=16000)
    rows = {row["id"]: row for ds in dataset.values() for row in ds.cast_column("audio", datasets.Audio(decode=False))}
    for row in rows.values():
        audio = load_audio(row["audio"]["bytes"], sampling_rate=16000)
        assert abs(audio.size / 16000 - row["duration"]) < 0.01
        assert row["plain_text"] == vocab.plain_text(row["tagged_text"])
        assert row["tags"] == vocab.tag_names(row["tagged_text"]) and row["backend"] == "recording"
    assert [rows[i]["duration"] for i in ("calls/hello", "laugh")] == pytest.approx([1.5, 2.0], abs=0.01)
    assert rows["laugh"]["tags"] == ["laughs", "confused"] and rows["laugh"]["slice"] == "light"
    assert [r["over_30s"] for r in rows.values()] == [False, True, False] and summary.over_30s == 1
    assert sorted(summary.failures) == ["broken", "empty"]
    assert "empty (0 bytes)" in summary.failures["empty"] and "broken.wav" in summary.failures["broken"]
    assert summary.rejected_reasons == {"missing audio file": 1, "unbalanced brackets": 1, "unreadable audio": 2}
    assert summary.warning_reasons == {sc.TRAILING_TAG: 1, sc.OUTSIDE_SET: 1} and summary.tags_outside_set == {
        "confused": 1
    }
    card = (Path(summary.hub_folder) / "README.md").read_text()
    assert f"Source: audio folder `{folder}`, transcripts from `{folder / 'metadata.csv'}`" in card
    assert "- recorded" in card and "- synthetic" not in card
    rendered = summary.render()
    assert "3 recordings decoded" in rendered and "missing.wav: no such audio file" in rendered


def test_a_datasets_dataset_with_its_own_columns_and_splits_becomes_the_recipes_dataset(tmp_path):
    def split(clips, texts):
        table = datasets.Dataset.from_dict(
            {"audio": [{"bytes": b, "path": None} for b in clips], "sentence": texts, "speaker": ["a"] * len(texts)}
        )
        return table.cast_column("audio", datasets.Audio(sampling_rate=24000))

    source = datasets.DatasetDict(
        {
            "train": split(
                [encode(tone(1.0, 200, 24000), 24000), b"garbage", encode(tone(0.5, 300, 24000), 24000)],
                ["[whispers] Quiet now.", "Corrupt clip.", None],
            ),
            "dev": split([encode(tone(2.0, 250, 24000), 24000)], ["[shouts] Over here!"]),
        }
    )
    source.save_to_disk(str(tmp_path / "source"))
    args = DataGenArguments(
        output_dir=str(tmp_path / "run"), source="hub", dataset_name=str(tmp_path / "source"),
        text_column="sentence",
    )  # fmt: skip
    summary = pipeline.run(args)
    dataset = datasets.load_from_disk(summary.dataset_path)
    assert {name: ds["tagged_text"] for name, ds in dataset.items()} == {
        "train": ["[whispers] Quiet now."], "dev": ["[shouts] Over here!"],
    }  # fmt: skip
    assert dataset["dev"]["duration"] == pytest.approx([2.0], abs=0.01) and dataset["dev"]["backend"] == ["hub"]
    assert list(summary.failures) == ["train-000001"] and summary.rejected_reasons["no transcript"] == 1
    assert summary.origin == f"the datasets dataset `{tmp_path / 'source'}`"


def test_a_users_script_file_becomes_a_dataset_with_every_script_and_tag_type(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng (make system-deps)")
    scripts = [
        "[sighs] One [laughs] two [gasps] three [pause] four [exhales] five [laughs] six [sighs] seven [gasps] "
        "eight [clears throat] nine.",  # nine tags
        "I told you so. [sad]",  # an emotion with nothing after it
        "[confused] Wait, where are we? [strong French accent] Bonjour.",  # outside the set, outside the vocabulary
        "[excited] We won!",
    ]
    path = tmp_path / "scripts.jsonl"
    path.write_text("".join(json.dumps({"id": f"s{i}", "tagged_text": text}) + "\n" for i, text in enumerate(scripts)))
    args = DataGenArguments(
        output_dir=str(tmp_path / "run"), script_source="file", scripts_file=str(path), split_ratios={"train": 1.0},
    )  # fmt: skip
    summary = pipeline.run(args)
    train = datasets.load_from_disk(summary.dataset_path)["train"]
    assert train["tagged_text"] == scripts and not summary.failures and not summary.rejected_scripts
    assert train["tags"][2] == ["confused", "strong french accent"] and len(train["tags"][0]) == 9
    assert train["slice"][0] == "dense"
    # exhales and confused are vocabulary tags outside the default (original) set
    assert summary.tags_outside_set == {"exhales": 1, "confused": 1, "strong french accent": 1}
    assert summary.warning_reasons == {sc.TRAILING_TAG: 1, sc.UNKNOWN_TAG: 1, sc.OUTSIDE_SET: 2}


def _numbered(tmp_path: Path, name: str, n: int) -> str:
    rows = {"id": [f"{name}{i:03d}" for i in range(n)], "tagged_text": [f"text {i}" for i in range(n)]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / name))
    return str(tmp_path / name)


def test_a_weighted_mixture_from_the_recipe_yaml_has_the_weighted_row_counts_exactly(tmp_path):
    synthetic, natural = _numbered(tmp_path, "synthetic", 50), _numbered(tmp_path, "natural", 7)
    recipe = yaml.safe_load((REPO / "recipes/tiny/sft.yaml").read_text())
    recipe.pop("dataset_name", None)
    recipe["dataset_mixture"] = {
        "datasets": [{"id": synthetic, "weight": 0.5}, {"id": natural, "split": "train", "weight": 2.5}],
        "seed": 3,
    }
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(recipe))
    script_args, *_, sft_args = make_sft_parser().parse_args_and_config(["--config", str(tmp_path / "mix.yaml")])
    assert isinstance(sft_args.dataset_mixture, WeightedMixture)
    train, evaluation = load_training_splits(script_args, None, 0, weighted=sft_args.dataset_mixture)
    ids = train["id"]
    synthetic_ids = [i for i in ids if i.startswith("synthetic")]
    natural_ids = [i for i in ids if i.startswith("natural")]
    assert len(ids) == 25 + 17 and len(set(synthetic_ids)) == 25  # int(0.5 x 50) drawn, none twice
    # 2.5 x 7 = 17: every natural row twice, then 3 more
    assert len(natural_ids) == 17 and sorted(set(natural_ids)) == [f"natural{i:03d}" for i in range(7)]
    assert sorted(natural_ids.count(i) for i in set(natural_ids)) == [2, 2, 2, 2, 3, 3, 3]
    assert ids != sorted(ids) and evaluation is None  # shuffled; neither dataset has a validation split
    again, _ = load_training_splits(script_args, None, 0, weighted=sft_args.dataset_mixture)
    assert again["id"] == ids  # the mixture's seed decides

    held_out = WeightedMixture.from_config({**recipe["dataset_mixture"], "test_split_size": 0.25})
    train, evaluation = load_training_splits(script_args, None, 0, weighted=held_out)
    assert (len(train), len(evaluation)) == (31, 11)
    with pytest.raises(ValueError, match="unknown keys"):
        WeightedMixture.from_config({"datasets": [{"id": synthetic, "fraction": 0.5}]})


@pytest.mark.skipif(
    not (ASTERISK_AUDIO.is_dir() and ASTERISK_TRANSCRIPTS.is_file()),
    reason="needs asterisk-core-sounds-en-wav and asterisk-core-sounds-en (make system-deps)",
)
def test_the_asterisk_prompts_build_a_real_speech_test_set_the_eval_recipe_scores(tmp_path, tiny_model_dir):
    config = yaml.safe_load((REPO / "data_gen/configs/real_speech.yaml").read_text())
    summary = pipeline.run(DataGenArguments(**{**config, "output_dir": str(tmp_path / "run")}))
    test = datasets.load_from_disk(summary.dataset_path)["test"]
    listed = sum(1 for where, record in recordings.read_metadata(ASTERISK_TRANSCRIPTS, "tagged_text") if record)
    assert len(test) + len(summary.rejected_scripts) + len(summary.failures) == listed
    assert len(test) > 550 and not summary.failures  # every studio prompt that has a transcript with words
    # what is left out is a sound description ("[ascending tones]") or a prompt whose file is not shipped
    assert set(summary.rejected_reasons) <= {"no words to speak", "empty tag", "missing audio file"}
    row = test.cast_column("audio", datasets.Audio(decode=False))[test["id"].index("auth-thankyou")]
    assert row["id"] == "auth-thankyou" and row["tagged_text"] == "Thank you." and row["tags"] == []
    assert load_audio(row["audio"]["bytes"]).size == pytest.approx(row["duration"] * 16000, abs=2)

    # the eval recipe scores a model on it (plain WER: the references carry no tags)
    output_dir = tmp_path / "eval"
    command = [
        sys.executable, "recipes/eval.py", "--config", "recipes/tiny/eval_real_speech.yaml",
        "--dataset", summary.dataset_path, "--output_dir", str(output_dir), "--max_samples", "4",
        "--max_new_tokens", "4", "--batch_size", "4",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    scores = json.loads((output_dir / "metrics.json").read_text())["base"]["corpus"]
    assert scores["num_samples"] == 4 and scores["wer"] > 0
    predictions = [json.loads(line) for line in (output_dir / "predictions" / "base.jsonl").read_text().splitlines()]
    assert [row["reference"] for row in predictions] == test["tagged_text"][:4]
