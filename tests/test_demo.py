"""The demo's plan (its stages write and read where the demo YAMLs do) and its verdict on a model that listens."""

from pathlib import Path

import pytest
import yaml

from evoxtral.configs import DemoArguments
from evoxtral.demo import demo_paths, plan_demo, prediction_examples, render_summary, summarize_demo
from evoxtral.evaluation.decoding import CHANCE_LABEL, MISMATCHED_SUFFIX

ROOT = Path(__file__).resolve().parents[1]


def _flag(stage, name: str) -> str:
    return stage.command[stage.command.index(name) + 1]


def test_default_paths_are_the_demo_yamls_own(monkeypatch):
    monkeypatch.chdir(ROOT)
    args = DemoArguments()
    stages = {stage.name: stage for stage in plan_demo(args, ROOT, python="py")}
    assert list(stages) == ["data", "sft", "raft", "eval"]
    data, sft, raft, evaluation = (
        yaml.safe_load((ROOT / path).read_text())
        for path in (args.data_config, args.sft_config, args.raft_config, args.eval_config)
    )
    assert _flag(stages["data"], "--output_dir") == data["output_dir"]
    assert _flag(stages["sft"], "--output_dir") == sft["output_dir"] == raft["model_name_or_path"]
    assert _flag(stages["raft"], "--model_name_or_path") == sft["output_dir"]
    assert _flag(stages["sft"], "--dataset_name") == sft["dataset_name"] == raft["dataset_name"]
    assert _flag(stages["raft"], "--output_dir") == raft["output_dir"]
    assert _flag(stages["eval"], "--dataset") == evaluation["dataset"]
    assert _flag(stages["eval"], "--output_dir") == evaluation["output_dir"]
    models = stages["eval"].command[stages["eval"].command.index("--models") + 1 :]
    assert models[: len(evaluation["models"])] == evaluation["models"]
    assert evaluation["mismatched_audio_control"] is True
    assert stages["sft"].shown.startswith("accelerate launch --num_processes 1 --num_cpu_threads_per_process ")


def test_another_root_moves_every_output(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = DemoArguments(output_dir=str(tmp_path), num_cpu_threads_per_process=3)
    paths = demo_paths(args, ROOT)
    assert all(Path(path).is_relative_to(tmp_path) for path in paths.values())
    stages = {stage.name: stage for stage in plan_demo(args, ROOT)}
    assert _flag(stages["raft"], "--model_name_or_path") == str(tmp_path / "demo" / "sft")
    assert _flag(stages["sft"], "--num_cpu_threads_per_process") == "3"
    assert stages["eval"].output_dir == tmp_path / "demo" / "eval"


def _metrics(own: float, other: float, chance: float = 0.3) -> dict:
    def scored(f1):
        return {
            "corpus": {"tag_f1": f1, "wer": 0.9, "num_samples": 64, "per_tag": {"laughs": {"f1": f1, "support": 9}}}
        }

    results = {}
    for label, f1 in (("base", 0.0), ("sft", own - 0.05), ("raft", own)):
        results[label], results[label + MISMATCHED_SUFFIX] = scored(f1), scored(other if f1 else 0.0)
    results[CHANCE_LABEL] = scored(chance)
    return results


@pytest.mark.parametrize(
    ("own", "other", "passed"), [(0.88, 0.22, True), (0.78, 0.20, False), (0.90, 0.60, False), (0.80, 0.45, True)]
)
def test_the_verdict_needs_a_high_own_score_far_above_the_other_audio(own, other, passed):
    summary = summarize_demo(_metrics(own, other))
    assert summary["best"] == "raft"
    assert summary["passed"] is passed
    assert summary["models"]["raft"]["gap"] == pytest.approx(own - other)
    text = render_summary(summary, [{"reference": "[laughs] a b.", "prediction": "[laughs] a c."}], None, {})
    assert ("PASS" in text) is passed and ("FAIL" in text) is not passed
    assert "chance" in text and "[laughs] a c." in text


def test_metrics_without_the_control_are_refused():
    metrics = _metrics(0.9, 0.1)
    del metrics["sft" + MISMATCHED_SUFFIX]
    with pytest.raises(ValueError, match="mismatched_audio_control"):
        summarize_demo(metrics)


def test_examples_prefer_tagged_references(tmp_path):
    path = tmp_path / "raft.jsonl"
    path.write_text(
        '{"reference": "plain words.", "prediction": "x"}\n{"reference": "[sighs] b.", "prediction": "y"}\n'
    )
    assert [row["prediction"] for row in prediction_examples(path, 1)] == ["y"]
    assert prediction_examples(tmp_path / "missing.jsonl") == []
