"""The demo (``make demo``): data -> SFT -> RAFT -> eval on 2 CPU cores, offline, through the commands a user runs,
then a table showing whether the trained model hears the tags (the logic of recipes/demo.py).

The model is `evoxtral-tiny-whisper`: Voxtral's architecture and 30 s chunk contract, Whisper tiny.en's pretrained
encoder as its (frozen) audio tower, and a small language model trained from random weights. The data are random
neutral words with five strongly acoustic tags (data_gen/configs/demo.yaml), so a tag cannot be guessed from the
words: the only way to write `[whispers]` at the right place is to hear it. The proof is the mismatched-audio
control: each held-out clip is decoded once from its own audio and once from another clip's; a model that listens
scores far higher with its own. The chance level (each clip's reference scored against the reference of the clip
whose audio it was given) is the most a perfect listener could score with the other audio.

Every path is passed to the stages as a flag under one output root (``--output_dir``, make's OUT), every other
setting comes from recipes/demo/*.yaml. The stages run through evoxtral.utils.stages: a rerun skips what is done, a
stage killed midway resumes, and a stage whose recipe or input changed starts again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from evoxtral.configs import DemoArguments
from evoxtral.evaluation.decoding import CHANCE_LABEL, MISMATCHED_SUFFIX
from evoxtral.publishing.summaries import format_selection_summary
from evoxtral.utils.formatting import duration, percent
from evoxtral.utils.jsonl import read_jsonl
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

BASE_MODEL = "evoxtral-tiny-whisper"
MODEL_LABELS = ("base", "sft", "raft")
TRAINED_LABELS = ("sft", "raft")
SUMMARY_MD, SUMMARY_JSON = "summary.md", "summary.json"
NUM_EXAMPLES = 5


def demo_paths(args: DemoArguments, root: Path) -> dict[str, Path]:
    """Every folder the demo's stages write, relative to ``root`` when inside it (the demo YAMLs' own layout)."""
    output = relative_to_root(root, args.output_dir)
    return {
        "data": output / "data" / "demo",
        "dataset": output / "data" / "demo" / "dataset",
        "sft": output / "demo" / "sft",
        "raft": output / "demo" / "raft",
        "eval": output / "demo" / "eval",
        "demo": output / "demo",
    }


def plan_demo(args: DemoArguments, root: Path, python: str = sys.executable) -> list[Stage]:
    """The four stages, each the command its make target runs, with the demo's paths as flags."""
    paths = {name: str(path) for name, path in demo_paths(args, root).items()}
    config = {
        name: str(relative_to_root(root, getattr(args, f"{name}_config"))) for name in ("data", "sft", "raft", "eval")
    }
    launcher = cpu_launcher(args.num_processes, args.num_cpu_threads_per_process)
    models = [f"base={BASE_MODEL}", f"sft={paths['sft']}", f"raft={paths['raft']}"]
    return [
        data_stage(python, root, config["data"], paths["data"]),
        Stage(
            "sft",
            *accelerate_command(python, launcher, "recipes/sft.py", "--config", config["sft"],
                                "--dataset_name", paths["dataset"], "--output_dir", paths["sft"]),
            root / paths["sft"],
            ("config.json", "recipe.yaml", "README.md"),
            ("data",),
            inputs=(root / config["sft"],),
        ),
        Stage(
            "raft",
            *accelerate_command(python, launcher, "recipes/raft.py", "--config", config["raft"],
                                "--model_name_or_path", paths["sft"], "--dataset_name", paths["dataset"],
                                "--output_dir", paths["raft"]),
            root / paths["raft"],
            ("config.json", "raft_summary.json", "README.md"),
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


def summarize_demo(
    metrics: dict[str, dict[str, dict]], *, protocol: str = "corpus", own_f1_min: float = 0.80, gap_min: float = 0.35
) -> dict[str, Any]:
    """Each model's tag F1 with its own audio and with another clip's, WER, per-tag F1, and the verdict on the best
    trained model (the higher own-audio tag F1 of SFT and RAFT): own >= own_f1_min and own - other >= gap_min."""
    missing = [
        label + suffix
        for label in MODEL_LABELS
        for suffix in ("", MISMATCHED_SUFFIX)
        if protocol not in metrics.get(label + suffix, {})
    ]
    if missing or CHANCE_LABEL not in metrics:
        raise ValueError(
            f"eval metrics lack {missing or [CHANCE_LABEL]} (have {sorted(metrics)}): the demo needs base, sft and "
            "raft evaluated with mismatched_audio_control: true"
        )
    chance = metrics[CHANCE_LABEL][protocol]
    models = {}
    for label in MODEL_LABELS:
        own, other = metrics[label][protocol], metrics[label + MISMATCHED_SUFFIX][protocol]
        models[label] = {
            "own_tag_f1": own["tag_f1"],
            "other_tag_f1": other["tag_f1"],
            "gap": own["tag_f1"] - other["tag_f1"],
            "own_wer": own["wer"],
            "other_wer": other["wer"],
            "per_tag_f1": {tag: row["f1"] for tag, row in own["per_tag"].items() if row["support"] > 0},
            "num_clips": own["num_samples"],
        }
    best = max(TRAINED_LABELS, key=lambda label: models[label]["own_tag_f1"])
    checks = {
        "own_tag_f1": models[best]["own_tag_f1"] >= own_f1_min,
        "gap": models[best]["gap"] >= gap_min,
    }
    return {
        "protocol": protocol,
        "models": models,
        "chance_tag_f1": chance["tag_f1"],
        "chance_wer": chance["wer"],
        "best": best,
        "targets": {"own_tag_f1_min": own_f1_min, "gap_min": gap_min},
        "checks": checks,
        "passed": all(checks.values()),
    }


def render_summary(
    summary: dict[str, Any], examples: list[dict], raft: list[dict] | None, stages: dict[str, dict]
) -> str:
    """The demo's closing text: the own-vs-other table, per-tag F1, RAFT's selection, examples and the verdict."""
    models, best = summary["models"], summary["best"]
    num_clips = models[best]["num_clips"]
    lines = [
        f"Does the model hear the tags? {num_clips} held-out clips of random words with 5 acoustic tags "
        f"(protocol `{summary['protocol']}`); each decoded from its own audio and from another clip's.",
        "",
        "| Model | Tag F1, own audio | Tag F1, other clip's audio | Own − other | WER, own audio |",
        "|---|---:|---:|---:|---:|",
    ]
    for label in MODEL_LABELS:
        row = models[label]
        lines.append(
            f"| {label} | {row['own_tag_f1']:.3f} | {row['other_tag_f1']:.3f} | {row['gap']:+.3f} | "
            f"{percent(row['own_wer'], 1)} |"
        )
    lines += [
        f"| chance (a perfect listener given the other clip's audio) | | {summary['chance_tag_f1']:.3f} | | |",
        "",
        "Per-tag F1, own audio:",
        "",
        "| Tag | " + " | ".join(MODEL_LABELS) + " |",
        "|---|" + "---:|" * len(MODEL_LABELS),
    ]
    tags = sorted({tag for label in MODEL_LABELS for tag in models[label]["per_tag_f1"]})
    for tag in tags:
        cells = " | ".join(f"{models[label]['per_tag_f1'].get(tag, 0.0):.3f}" for label in MODEL_LABELS)
        lines.append(f"| `[{tag}]` | {cells} |")
    if raft:
        rounds = "; ".join(f"round {round_['round']}: {format_selection_summary(round_)}" for round_ in raft)
        lines += ["", f"RAFT (k samples per clip, the best by the original reward, one epoch on the kept): {rounds}."]
    if examples:
        lines += ["", f"Examples ({best}, own audio):"]
        for row in examples:
            lines += [f"  reference:  {row['reference']}", f"  prediction: {row['prediction']}", ""]
    targets, checks = summary["targets"], summary["checks"]
    verdict = "PASS" if summary["passed"] else "FAIL"
    lines += [
        f"Verdict ({best}, the better trained model): {verdict}. Own-audio tag F1 {models[best]['own_tag_f1']:.3f} "
        f"(target ≥ {targets['own_tag_f1_min']:.2f} {'✓' if checks['own_tag_f1'] else '✗'}); "
        f"own − other {models[best]['gap']:+.3f} (target ≥ {targets['gap_min']:.2f} {'✓' if checks['gap'] else '✗'}).",
        "What this shows: the model writes tags it can only know from the sound. What it does not show: real speech "
        "(the clips are espeak-ng), the words (a 4,096-token model trained for minutes on random words), or the 3B.",
    ]
    if stages:
        total = sum(record.get("seconds") or 0 for record in stages.values())
        times = ", ".join(f"{name} {duration(record.get('seconds'))}" for name, record in stages.items())
        lines.append(f"Stage times: {times} (total {duration(total)}).")
    return "\n".join(lines)


def prediction_examples(predictions: Path, count: int = NUM_EXAMPLES) -> list[dict]:
    """The first ``count`` tagged references of a predictions file, with what the model wrote."""
    rows = list(read_jsonl(predictions)) if predictions.is_file() else []
    tagged = [row for row in rows if "[" in row["reference"]]
    return (tagged or rows)[:count]


def run_demo(args: DemoArguments) -> dict[str, Any]:
    """Run the stages, then show and write (summary.md, summary.json) whether the trained model hears the tags;
    returns the summary."""
    root = find_repo_root()
    paths = demo_paths(args, root)
    demo_dir = root / paths["demo"]
    records = run_stages(plan_demo(args, root), root, demo_dir / "logs", demo_dir / "stages.json")
    eval_dir = root / paths["eval"]
    summary = summarize_demo(
        read_json(eval_dir / "metrics.json"), own_f1_min=args.own_tag_f1_min, gap_min=args.gap_min
    )
    raft_file = root / paths["raft"] / "raft_summary.json"
    raft = read_json(raft_file) if raft_file.is_file() else None
    examples = prediction_examples(eval_dir / "predictions" / f"{summary['best']}.jsonl")
    stages = {name: {"seconds": record.get("seconds")} for name, record in records.items()}
    text = render_summary(summary, examples, raft, stages)
    (demo_dir / SUMMARY_MD).write_text(text + "\n", encoding="utf-8")
    payload = {**summary, "stages": stages, "examples": examples}
    (demo_dir / SUMMARY_JSON).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info(
        "\n%s\n\nArtefacts:\n"
        "  data   %s (train/validation/test, espeak-ng speech)\n"
        "  SFT    %s (model + model card)\n"
        "  RAFT   %s (model + model card; round_1/samples: every scored sample)\n"
        "  eval   %s (report.md, metrics.json, per_tag_f1.png, predictions/)\n"
        "  demo   %s (%s, %s, logs/)",
        text,
        paths["dataset"],
        paths["sft"],
        paths["raft"],
        paths["eval"],
        paths["demo"],
        SUMMARY_MD,
        SUMMARY_JSON,
    )
    return summary
