"""The demo (``make demo``): data -> SFT -> RAFT -> eval on the built-in tiny Voxtral, offline, through the commands
a user runs, then base vs SFT vs RAFT from the eval report (the logic of recipes/demo.py).

Every path is passed to the stages as a flag under one output root (``--output_dir``, make's OUT), every other
setting comes from the tiny YAMLs. The stages run through evoxtral.utils.stages: a rerun skips what is done, a stage
killed midway resumes, and a stage whose recipe or input changed starts again.
"""

from __future__ import annotations

import sys
from pathlib import Path

from evoxtral.configs import DemoArguments
from evoxtral.utils.logging import get_logger
from evoxtral.utils.stages import (
    Stage,
    accelerate_command,
    data_stage,
    find_repo_root,
    python_command,
    relative_to_root,
    run_stages,
)

logger = get_logger(__name__)


def demo_paths(args: DemoArguments, root: Path) -> dict[str, Path]:
    """Every folder the demo's stages write, relative to ``root`` when inside it (the tiny YAMLs' own layout)."""
    output = relative_to_root(root, args.output_dir)
    return {
        "data": output / "data" / "tiny",
        "dataset": output / "data" / "tiny" / "dataset",
        "sft": output / "tiny" / "sft",
        "raft": output / "tiny" / "raft",
        "eval": output / "eval" / "tiny",
        "demo": output / "demo",
    }


def plan_demo(args: DemoArguments, root: Path, python: str = sys.executable) -> list[Stage]:
    """The four stages, each the command its make target runs, with the demo's paths as flags."""
    paths = {name: str(path) for name, path in demo_paths(args, root).items()}
    config = {
        name: str(relative_to_root(root, getattr(args, f"{name}_config"))) for name in ("data", "sft", "raft", "eval")
    }
    launcher = ["--num_processes", str(args.num_processes)]
    models = ["base=evoxtral-tiny", f"sft=evoxtral-tiny+{paths['sft']}", f"raft=evoxtral-tiny+{paths['raft']}"]
    return [
        data_stage(python, root, config["data"], paths["data"]),
        Stage(
            "sft",
            *accelerate_command(python, launcher, "recipes/sft.py", "--config", config["sft"],
                                "--dataset_name", paths["dataset"], "--output_dir", paths["sft"]),
            root / paths["sft"],
            ("recipe.yaml", "README.md"),
            ("data",),
            inputs=(root / config["sft"],),
        ),
        Stage(
            "raft",
            *accelerate_command(python, launcher, "recipes/raft.py", "--config", config["raft"],
                                "--adapter", paths["sft"], "--dataset_name", paths["dataset"],
                                "--output_dir", paths["raft"]),
            root / paths["raft"],
            ("raft_summary.json", "README.md"),
            ("data", "sft"),
            inputs=(root / config["raft"],),
        ),
        Stage(
            "eval",
            *python_command(python, "recipes/eval.py", "--config", config["eval"], "--dataset", paths["dataset"],
                            "--models", *models, "--output_dir", paths["eval"]),
            root / paths["eval"],
            ("metrics.json", "report.md", "per_tag_f1.png"),
            ("data", "sft", "raft"),
            inputs=(root / config["eval"],),
        ),
    ]  # fmt: skip


def run_demo(args: DemoArguments) -> Path:
    """Run the stages, then show Table 2 of the eval report and where every stage's files are; returns the report."""
    root = find_repo_root()
    paths = demo_paths(args, root)
    run_stages(plan_demo(args, root), root, root / paths["demo"] / "logs", root / paths["demo"] / "stages.json")
    report = root / paths["eval"] / "report.md"
    lines = report.read_text(encoding="utf-8").splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("## Table 2"))
    end = next(index for index, line in enumerate(lines) if line.startswith("## Table 3"))
    logger.info(
        "\n%s\nArtefacts:\n"
        "  data   %s (train/validation/test, espeak-ng speech)\n"
        "  SFT    %s (LoRA adapter + model card)\n"
        "  RAFT   %s (adapter + model card; round_1/samples: every scored sample)\n"
        "  eval   %s (report.md, metrics.json, per_tag_f1.png, predictions/)\n"
        "  logs   %s",
        "\n".join(lines[start:end]),
        paths["dataset"],
        paths["sft"],
        paths["raft"],
        paths["eval"],
        paths["demo"] / "logs",
    )
    return report
