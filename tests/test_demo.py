"""The demo's plan: its stages write and read where the tiny YAMLs (and so `make sft`, `make raft`, `make eval`) do."""

from pathlib import Path

import yaml

from evoxtral.configs import DemoArguments
from evoxtral.demo import demo_paths, plan_demo

ROOT = Path(__file__).resolve().parents[1]


def _flag(stage, name: str) -> str:
    return stage.command[stage.command.index(name) + 1]


def test_default_paths_are_the_tiny_yamls_own(monkeypatch):
    monkeypatch.chdir(ROOT)
    args = DemoArguments()
    stages = {stage.name: stage for stage in plan_demo(args, ROOT, python="py")}
    assert list(stages) == ["data", "sft", "raft", "eval"]
    data, sft, raft, evaluation = (
        yaml.safe_load((ROOT / path).read_text())
        for path in (args.data_config, args.sft_config, args.raft_config, args.eval_config)
    )
    assert _flag(stages["data"], "--output_dir") == data["output_dir"]
    assert _flag(stages["sft"], "--output_dir") == sft["output_dir"] == raft["adapter"]
    assert _flag(stages["sft"], "--dataset_name") == sft["dataset_name"] == raft["dataset_name"]
    assert _flag(stages["raft"], "--output_dir") == raft["output_dir"]
    assert _flag(stages["eval"], "--dataset") == evaluation["dataset"]
    assert _flag(stages["eval"], "--output_dir") == evaluation["output_dir"]
    models = stages["eval"].command[stages["eval"].command.index("--models") + 1 :]
    assert models[: len(evaluation["models"])] == evaluation["models"]
    assert stages["sft"].shown.startswith("accelerate launch --num_processes 1 recipes/sft.py --config ")


def test_another_root_moves_every_output(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = DemoArguments(output_dir=str(tmp_path))
    paths = demo_paths(args, ROOT)
    assert all(Path(path).is_relative_to(tmp_path) for path in paths.values())
    stages = {stage.name: stage for stage in plan_demo(args, ROOT)}
    assert _flag(stages["raft"], "--adapter") == str(tmp_path / "tiny" / "sft")
    assert stages["eval"].output_dir == tmp_path / "eval" / "tiny"
