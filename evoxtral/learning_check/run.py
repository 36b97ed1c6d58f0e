"""The learning check: does a model trained with these recipes hear the tags? (the logic of recipes/learning_check.py)

A controlled experiment, run stage by stage through the same entry points a user runs:

1. ``data``: ``data_gen/generate.py`` on a learning-check config (random words drawn independently of the tags,
   every tag rendered only in the sound);
2. ``model``: ``python -m evoxtral.model.tiny`` writes a Voxtral-architecture checkpoint folder of the chosen size;
3. ``sft``: ``accelerate launch recipes/sft.py`` trains it from random weights (full fine-tuning);
4. ``raft``: ``accelerate launch recipes/raft.py``, one round continuing the SFT model;
5. ``eval``: ``recipes/eval.py`` on the held-out split for both models, with the mismatched-audio control.

Then ``results.md``, ``results.json`` and ``learning_check.png``: per-tag F1 with the clip's own audio and with
another clip's audio, WER, SFT next to RAFT, and pass/fail against the targets. The stages run through
evoxtral.utils.stages: a stage whose outputs exist is skipped, so a killed run resumes (SFT, RAFT and eval also
resume inside a stage), and a stage whose inputs were rebuilt or changed is rebuilt too, so no result mixes old and
new models.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from trl import TrlParser

from evoxtral.configs import SCALES, LearningCheckArguments
from evoxtral.learning_check.report import RAFT_LABEL, RESULTS_JSON, RESULTS_MD, RESULTS_PLOT, SFT_LABEL, write_results
from evoxtral.model.tiny import count_parameters
from evoxtral.utils.formatting import duration
from evoxtral.utils.logging import get_logger
from evoxtral.utils.stages import (
    Stage,
    accelerate_command,
    cpu_launcher,
    data_stage,
    find_repo_root,
    python_command,
    read_json,
    relative_to_root,
    run_stages,
)

logger = get_logger(__name__)

CONFIG_DIR = Path("recipes") / "learning_check"
STAGES_JSON = "stages.json"


def stage_paths(args: LearningCheckArguments, root: Path) -> dict[str, Path]:
    """Every folder the stages write, relative to ``root`` when inside it."""
    output_dir = relative_to_root(root, args.output_dir)
    data_dir = args.data_dir
    if data_dir is None:
        data_dir = yaml.safe_load((root / relative_to_root(root, args.data_config)).read_text()).get("output_dir")
        if not data_dir:
            raise ValueError(f"{args.data_config} sets no output_dir; pass --data_dir")
    data_dir = relative_to_root(root, data_dir)
    return {
        "output": output_dir,
        "data": data_dir,
        "dataset": data_dir / "dataset",
        "model": output_dir / "model",
        "sft": output_dir / "sft",
        "raft": output_dir / "raft",
        "eval": output_dir / "eval",
        "logs": output_dir / "logs",
    }


def plan_stages(args: LearningCheckArguments, root: Path, python: str = sys.executable) -> list[Stage]:
    """The five stages; paths come from :func:`stage_paths` (passed as flags), every other setting from the YAMLs."""
    paths = stage_paths(args, root)
    config = {
        name: str(relative_to_root(root, getattr(args, f"{name}_config"))) for name in ("data", "sft", "raft", "eval")
    }

    launcher = cpu_launcher(args.num_processes)
    if args.accelerate_config:
        launcher = ["--config_file", str(relative_to_root(root, args.accelerate_config))]

    sizes = {
        "--vocab-size": args.model_vocab_size,
        "--text-layers": args.model_text_layers,
        "--audio-layers": args.model_audio_layers,
        "--hidden-size": args.model_hidden_size,
        "--num-attention-heads": args.model_num_attention_heads,
    }
    size_options = [item for option, value in sizes.items() if value is not None for item in (option, str(value))]
    return [
        data_stage(python, root, config["data"], str(paths["data"])),
        Stage(
            "model",
            *python_command(python, "-m", "evoxtral.model.tiny", "--output-dir", str(paths["model"]), "--preset", args.model_preset,
                            *size_options, "--seed", str(args.model_seed)),
            root / paths["model"],
            ("config.json", "tokenizer_config.json"),
        ),
        Stage(
            "sft",
            *accelerate_command(python, launcher, "recipes/sft.py", "--config", config["sft"],
                                "--model_name_or_path", str(paths["model"]), "--dataset_name", str(paths["dataset"]),
                                "--output_dir", str(paths["sft"])),
            root / paths["sft"],
            ("config.json", "recipe.yaml"),
            ("data", "model"),
            inputs=(root / config['sft'],),
        ),
        Stage(
            "raft",
            *accelerate_command(python, launcher, "recipes/raft.py", "--config", config["raft"],
                                "--model_name_or_path", str(paths["sft"]), "--dataset_name", str(paths["dataset"]),
                                "--output_dir", str(paths["raft"])),
            root / paths["raft"],
            ("config.json", "raft_summary.json"),
            ("data", "sft"),
            inputs=(root / config['raft'],),
        ),
        Stage(
            "eval",
            *python_command(python, "recipes/eval.py", "--config", config["eval"], "--dataset", str(paths["dataset"]),
                            "--models", f"{SFT_LABEL}={paths['sft']}", f"{RAFT_LABEL}={paths['raft']}",
                            "--mismatched_audio_control", "true", "--output_dir", str(paths["eval"])),
            root / paths["eval"],
            ("metrics.json", "report.md", "per_tag_f1.png"),
            ("data", "sft", "raft"),
            inputs=(root / config['eval'],),
        ),
    ]  # fmt: skip


def run_learning_check(args: LearningCheckArguments) -> dict[str, Any]:
    """All stages, then results.md / results.json / learning_check.png in ``output_dir``; returns the summary."""
    root = find_repo_root()
    paths = stage_paths(args, root)
    output_dir = root / paths["output"]
    started = time.monotonic()
    stages = run_stages(plan_stages(args, root), root, root / paths["logs"], output_dir / STAGES_JSON)

    metrics = json.loads((root / paths["eval"] / "metrics.json").read_text(encoding="utf-8"))
    eval_settings = yaml.safe_load((root / relative_to_root(root, args.eval_config)).read_text()) or {}
    sft_train = read_json(root / paths["sft"] / "train_results.json") or {}
    details = {
        "scale": args.scale,
        "targets_expected": args.targets_expected,
        "dataset": str(paths["dataset"]),
        "split": eval_settings.get("split", "test"),
        "model_parameters": f"{count_parameters(root / paths['model']) / 1e6:.1f}M",
        "sft_train_runtime": sft_train.get("train_runtime"),
        "eval_report": str(paths["eval"] / "report.md"),
        "stages": stages,
    }
    summary = write_results(output_dir, metrics, details, protocol=args.protocol, targets=args.targets)
    verdict = "PASS" if summary["passed"] else "FAIL" + ("" if args.targets_expected else " (smoke scale: expected)")
    logger.info(
        f"\n{(output_dir / RESULTS_MD).read_text(encoding='utf-8')}\n"
        f"Learning check ({args.scale}) finished in {duration(time.monotonic() - started)}: {verdict}. "
        f"Wrote {output_dir}/: {RESULTS_MD}, {RESULTS_JSON}, {RESULTS_PLOT}, {STAGES_JSON}; stages in "
        f"{', '.join(str(paths[name]) for name in ('data', 'model', 'sft', 'raft', 'eval'))}."
    )
    return summary


def parse_learning_check_args(argv: Sequence[str] | None = None) -> LearningCheckArguments:
    """``--scale tiny|full`` picks recipes/learning_check/<scale>/learning_check.yaml unless ``--config`` is given."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in argv:
        scale_parser = argparse.ArgumentParser(add_help=False)
        scale_parser.add_argument("--scale", default="tiny", choices=SCALES)
        scale = scale_parser.parse_known_args(argv)[0].scale
        argv = ["--config", str(find_repo_root() / CONFIG_DIR / scale / "learning_check.yaml"), *argv]
    (args,) = TrlParser((LearningCheckArguments,)).parse_args_and_config(argv)
    return args
