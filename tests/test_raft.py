"""RAFT: selection wiring, reward choice from the recipe YAML, resume of a partly scored round, and the tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evoxtral.configs import RaftArguments
from evoxtral.training.raft import sample_store
from evoxtral.training.raft.sample_store import read_scored_rows, sample_and_score, score_input
from evoxtral.training.raft.selection import select_training_targets

SETTINGS = {"model": "m", "samples_per_input": 2}


def scored_row(clip_id: str, rewards: list[float], reference_reward: float = 1.0) -> dict:
    return {
        "id": clip_id,
        "reference": f"reference {clip_id}",
        "samples": [f"{clip_id} sample {i}" for i in range(len(rewards))],
        "rewards": rewards,
        "components": {},
        "reference_reward": reference_reward,
    }


# --- Selection -----------------------------------------------------------------------------------------------------


def test_selection_keeps_best_sample_and_drops_ties_at_the_threshold():
    # 10 clips, drop 10%: threshold = ascending best rewards at index 1 = 0.3; both clips at 0.3 go, 0.2 goes too
    bests = [0.9, 0.3, 0.8, 0.2, 0.3, 0.95, 0.7, 0.6, 0.5, 0.4]
    rows = [scored_row(f"c{i}", [best - 0.1, best, best - 0.05]) for i, best in enumerate(bests)]
    selection = select_training_targets(rows, 0.1)
    assert selection.threshold == pytest.approx(0.3)
    assert selection.best_index == [1] * 10
    assert [i for i, source in enumerate(selection.target_source) if source == "dropped"] == [1, 3, 4]
    assert selection.training_rows == [0, 2, 5, 6, 7, 8, 9]
    assert selection.target(0) == "c0 sample 1"
    summary = selection.summary()
    assert (summary["inputs"], summary["kept"], summary["dropped"], summary["reference_fallbacks"]) == (10, 7, 3, 0)
    assert summary["best_reward_mean"] == pytest.approx(sum(bests) / 10)
    assert summary["best_reward_p50"] == pytest.approx(0.55)


def test_reference_fallback_replaces_samples_below_the_reference_reward():
    bests = [1.0, 0.97, 0.9, 0.2, 0.5]
    rows = [scored_row(f"c{i}", [0.0, best]) for i, best in enumerate(bests)]
    rows[1]["reference_reward"] = 0.96  # a reference the rewards do not rate perfect (e.g. an unknown tag)
    plain = select_training_targets(rows, 0.1)  # threshold: index floor(0.5) = 0, the 0.2
    assert plain.target_source == ["sample", "sample", "sample", "dropped", "sample"]

    fallback = select_training_targets(rows, 0.1, reference_fallback=True)
    assert fallback.target_source == ["sample", "sample", "reference", "reference", "reference"]
    assert fallback.target(3) == "reference c3"
    assert fallback.target(1) == "c1 sample 1"

    tolerant = select_training_targets(rows, 0.1, reference_fallback=True, reference_fallback_margin=0.15)
    assert tolerant.target_source == ["sample", "sample", "sample", "reference", "reference"]
    assert tolerant.threshold == fallback.threshold == plain.threshold == pytest.approx(0.2)


def test_reference_reward_is_the_reference_scored_against_itself():
    args = RaftArguments(reward_funcs=["tag_f1", "format"], reward_weights=[0.5, 0.5])
    rewards, components, reference_reward = score_input(["[laughs] hi", "hi"], "[laughs] hi [unheard of tag]", args)
    # the reference's own tag F1 is 1.0, its format 1/2 (one of two tags is outside the vocabulary)
    assert reference_reward == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    # "[laughs] hi": tag F1 2/3 (1 of 1 predicted, 1 of 2 expected), format 1.0; "hi": tag F1 0, format 1.0
    assert components == {"tag_f1": [pytest.approx(2 / 3), 0.0], "format": [1.0, 1.0]}
    assert rewards == [pytest.approx(0.5 * 2 / 3 + 0.5), pytest.approx(0.5)]


# --- Rewards from the recipe YAML -------------------------------------------------------------------------------------


def test_rewards_are_chosen_by_name_and_weight_in_the_yaml(tmp_path):
    from recipes.raft import make_parser

    config = tmp_path / "raft.yaml"
    config.write_text(
        "output_dir: x\nuse_cpu: true\nreward_funcs: [emphasis_f1, format]\nreward_weights: [0.25, 0.75]\nsamples_per_input: 3\n"
    )
    raft_args = make_parser().parse_args_and_config(["--config", str(config)])[0]
    assert (raft_args.reward_funcs, raft_args.reward_weights) == (["emphasis_f1", "format"], [0.25, 0.75])
    rewards, components, _ = score_input(["I said NO [laughs]", "I said no [wat"], "I said NO [sighs]", raft_args)
    assert set(components) == {"emphasis_f1", "format"}
    assert rewards == [pytest.approx(0.25 * 1.0 + 0.75 * 1.0), pytest.approx(0.25 * 0.0 + 0.75 * 0.0)]

    overridden = make_parser().parse_args_and_config(["--config", str(config), "--samples_per_input", "5"])[0]
    assert (overridden.samples_per_input, overridden.reward_funcs) == (5, ["emphasis_f1", "format"])

    config.write_text(
        "output_dir: x\nuse_cpu: true\nreward_funcs: [tag_f1, no_such_reward]\nreward_weights: [0.5, 0.5]\n"
    )
    with pytest.raises(ValueError, match="no_such_reward"):
        make_parser().parse_args_and_config(["--config", str(config)])
    config.write_text("output_dir: x\nuse_cpu: true\nreward_funcs: [tag_f1, format]\nreward_weights: [1.0]\n")
    with pytest.raises(ValueError, match="one weight per reward"):
        make_parser().parse_args_and_config(["--config", str(config)])


def test_default_rewards_are_the_original_raft_reward():
    args = RaftArguments()
    prediction, reference = "[laughs] hello there friend", "[laughs] hello there [sighs] my friend"
    rewards, components, _ = score_input([prediction], reference, args)
    # WER 1/4 -> accuracy 0.75; tag F1: p 1, r 1/2 -> 2/3; hallucination 0 (laughs is a reference tag type)
    assert rewards == [pytest.approx(0.4 * 0.75 + 0.4 * 2 / 3 + 0.2 * 1.0)]
    assert components == {"wer_accuracy": [0.75], "tag_f1": [pytest.approx(2 / 3)], "hallucination": [1.0]}


# --- Resume of a partly scored round -------------------------------------------------------------------------------


class FakeSampler:
    """Stands in for the model: records which clips it was asked for and returns numbered samples."""

    def __init__(self):
        self.requested: list[str] = []

    def __call__(self, model, processor, audios, *, k, **options):
        self.requested.extend(audios)
        return [[f"{audio} take {i}" for i in range(k)] for audio in audios]


def run_sampling(scored_dir: Path, sampler: FakeSampler, monkeypatch, num_clips: int = 5) -> list[dict]:
    monkeypatch.setattr("evoxtral.model.sampling.sample_transcripts", sampler)
    ids = [f"clip{i}" for i in range(num_clips)]
    args = RaftArguments(samples_per_input=2, sampling_batch_size=2)
    return sample_and_score(
        None, None, ids, [f"{clip_id} take 1" for clip_id in ids], ids, scored_dir, args, settings=SETTINGS, seed=0
    )


def test_resume_skips_scored_clips_and_duplicates_nothing(tmp_path, monkeypatch):
    scored_dir = tmp_path / "scored"
    first = FakeSampler()
    run_sampling(scored_dir, first, monkeypatch, num_clips=2)  # the first two clips, as a killed run left them
    shard = scored_dir / "samples-rank000.jsonl"
    kept_lines = shard.read_text().splitlines()
    shard.write_text("\n".join(kept_lines) + "\n" + '{"id": "clip2", "reference": "clip2 ta')  # torn mid-write

    resumed = FakeSampler()
    rows = run_sampling(scored_dir, resumed, monkeypatch)
    assert resumed.requested == ["clip2", "clip3", "clip4"]  # the torn clip is sampled again, the others not
    assert [row["id"] for row in rows] == [f"clip{i}" for i in range(5)]
    lines = [json.loads(line) for line in shard.read_text().splitlines()]
    assert [row["id"] for row in lines] == [f"clip{i}" for i in range(5)]  # no duplicate, no torn line left
    assert lines[:2] == [json.loads(line) for line in kept_lines]
    assert rows[3]["samples"] == ["clip3 take 0", "clip3 take 1"]
    assert rows[3]["rewards"][1] == pytest.approx(1.0) and rows[3]["rewards"][0] < 1.0

    again = FakeSampler()
    assert run_sampling(scored_dir, again, monkeypatch) == rows
    assert again.requested == []


def test_resume_refuses_samples_from_other_settings(tmp_path, monkeypatch):
    scored_dir = tmp_path / "scored"
    run_sampling(scored_dir, FakeSampler(), monkeypatch, num_clips=1)
    settings = json.loads((scored_dir / sample_store.SETTINGS_FILE).read_text())
    (scored_dir / sample_store.SETTINGS_FILE).write_text(json.dumps({**settings, "samples_per_input": 4}))
    with pytest.raises(ValueError, match="other settings"):
        run_sampling(scored_dir, FakeSampler(), monkeypatch, num_clips=1)


def test_read_scored_rows_skips_a_torn_line_in_any_shard(tmp_path):
    (tmp_path / "samples-rank000.jsonl").write_text(json.dumps(scored_row("a", [1.0])) + '\n{"id": "b"')
    (tmp_path / "samples-rank001.jsonl").write_text(json.dumps(scored_row("c", [0.5])) + "\n")
    assert sorted(read_scored_rows(tmp_path)) == ["a", "c"]


# --- The tiny end-to-end run ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raft_dataset(tmp_path_factory):
    """Four training clips on which a random model's rewards differ: with no tags in its output it scores 1.0 on
    the empty reference, 0.6 on "[laughs]" and on "one two" (no tags on either side), 0.2 on the last one."""
    import datasets

    from tests.conftest import encode, noise_clip

    texts = ["", "[laughs]", "one two", "[sighs] three"]
    columns = {
        "id": [f"clip{i}" for i in range(4)],
        "audio": [{"bytes": encode(noise_clip(0.5, seed=i), 16_000), "path": f"clip{i}.wav"} for i in range(4)],
        "tagged_text": texts,
    }
    train = datasets.Dataset.from_dict(columns).cast_column("audio", datasets.Audio(sampling_rate=16_000))
    path = tmp_path_factory.mktemp("raft-data") / "dataset"
    datasets.DatasetDict({"train": train}).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def sft_adapter(tiny_model_and_processor, tmp_path_factory):
    """A LoRA on the SFT recipe's targets, saved as the SFT stage saves it (random LoRA weights are enough here)."""
    import peft
    from trl import ModelConfig

    from evoxtral.configs import VoxtralSFTArguments
    from evoxtral.model.loading import load_model_and_processor
    from evoxtral.model.lora import voxtral_lora_config

    model, _ = load_model_and_processor("evoxtral-tiny")
    lora = voxtral_lora_config(ModelConfig(use_peft=True, lora_r=4, lora_alpha=8), VoxtralSFTArguments())
    path = tmp_path_factory.mktemp("sft")
    peft.get_peft_model(model, lora).save_pretrained(str(path))
    return path


def test_tiny_raft_through_accelerate_launch(raft_dataset, sft_adapter, tmp_path):
    import os
    import subprocess
    import sys

    import datasets
    from safetensors.torch import load_file

    from evoxtral.scoring.rewards import combined_reward

    root = Path(__file__).resolve().parents[1]
    output_dir = tmp_path / "raft"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "recipes/raft.py",
        "--config", "recipes/tiny/raft.yaml", "--dataset_name", str(raft_dataset), "--adapter", str(sft_adapter),
        "--output_dir", str(output_dir), "--samples_per_input", "2", "--max_new_tokens", "6", "--rounds", "2",
        "--gradient_accumulation_steps", "1", "--warmup_steps", "0", "--learning_rate", "1e-2",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(root)}
    finished = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]

    for round_number in (1, 2):
        samples = datasets.load_from_disk(str(output_dir / f"round_{round_number}" / "samples"))
        assert samples["id"] == ["clip0", "clip1", "clip2", "clip3"]
        for row in samples:
            assert len(row["samples"]) == 2
            assert row["rewards"] == [pytest.approx(combined_reward(s, row["reference"])) for s in row["samples"]]
            assert row["best_reward"] == max(row["rewards"])
        kept = [row for row in samples if row["target_source"] == "sample"]
        assert kept and all(row["target"] == row["samples"][row["best_index"]] for row in kept)
    weights = [load_file(str(output_dir / f"round_{r}" / "adapter_model.safetensors")) for r in (1, 2)]
    initial = load_file(str(sft_adapter / "adapter_model.safetensors"))
    assert any(not (weights[0][name] == initial[name]).all() for name in initial)  # round 1 trained the SFT adapter
    assert any(not (weights[1][name] == weights[0][name]).all() for name in initial)  # round 2 continued it
    final = load_file(str(output_dir / "adapter_model.safetensors"))
    assert all((final[name] == weights[1][name]).all() for name in final)
    card = (output_dir / "README.md").read_text()
    assert "| Round | Clips | Kept |" in card and "| 2 | 4 |" in card and "`hallucination`: 1 - the" in card
    assert "Final model + model card" in finished.stdout

    rerun = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Round 1 already done" in rerun.stdout and "Round 2 already done" in rerun.stdout


def test_raft_continues_a_whole_model_when_there_is_no_adapter(raft_dataset, tiny_model_dir, tmp_path):
    """Full fine-tuning (use_peft false, no adapter): the language model trains, the audio encoder stays frozen,
    and the released folder is a whole model."""
    from safetensors.torch import load_file

    from evoxtral.configs import make_raft_parser
    from evoxtral.training.raft.rounds import run_raft

    output_dir = tmp_path / "raft-full"
    args = make_raft_parser().parse_args_and_config(
        ["--config", "recipes/tiny/raft.yaml", "--adapter", "null", "--model_name_or_path", "evoxtral-tiny",
         "--dataset_name", str(raft_dataset), "--output_dir", str(output_dir), "--samples_per_input", "2",
         "--max_new_tokens", "4", "--learning_rate", "1e-2", "--save_strategy", "no"]
    )  # fmt: skip
    assert args[0].adapter is None and not args[2].use_peft
    summaries = run_raft(*args)
    assert [summary["round"] for summary in summaries] == [1]
    assert not (output_dir / "adapter_config.json").exists() and (output_dir / "config.json").is_file()
    trained = load_file(str(output_dir / "model.safetensors"))
    base = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    changed = {name for name in base if not (trained[name] == base[name]).all()}
    assert any(name.startswith("language_model.") for name in changed)
    assert changed and not any(name.startswith("audio_tower.") for name in changed)
