"""The learning check: does a model trained with these recipes hear the tags? (the logic of recipes/learning_check.py)

A controlled experiment, run stage by stage through the same entry points a user runs:

1. ``data``: ``data_gen/generate.py`` on a learning-check config (random words drawn independently of the tags,
   every tag rendered only in the sound);
2. ``model``: ``python -m evoxtral.model.tiny`` writes a Voxtral-architecture checkpoint folder of the chosen size;
3. ``sft``: ``accelerate launch recipes/sft.py`` trains it from random weights (full fine-tuning);
4. ``raft``: ``accelerate launch recipes/raft.py``, one round continuing the SFT model;
5. ``eval``: ``recipes/eval.py`` on the held-out split for both models, with the mismatched-audio control.

Then ``results.md``, ``results.json`` and ``learning_check.png``: per-tag F1 with the clip's own audio and with
another clip's audio, WER, SFT next to RAFT, and pass/fail against the targets. A stage whose outputs exist is
skipped, so a killed run resumes (SFT, RAFT and eval also resume inside a stage); a stage whose input was rebuilt
in this run is rebuilt too, so no result mixes old and new models.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from evoxtral.configs import SCALES, LearningCheckArguments, Targets
from evoxtral.evaluation.decoding import MISMATCHED_SUFFIX
from evoxtral.evaluation.plots import plot_per_tag_f1
from evoxtral.evaluation.report import per_tag_rows

CONFIG_DIR = Path("recipes") / "learning_check"
SFT_LABEL, RAFT_LABEL = "sft", "raft"
MODEL_LABELS = (SFT_LABEL, RAFT_LABEL)
# results.json condition keys -> the eval recipe's labels for them
CONDITIONS = {
    SFT_LABEL: SFT_LABEL,
    f"{SFT_LABEL}_other_audio": SFT_LABEL + MISMATCHED_SUFFIX,
    RAFT_LABEL: RAFT_LABEL,
    f"{RAFT_LABEL}_other_audio": RAFT_LABEL + MISMATCHED_SUFFIX,
}
RESULTS_MD, RESULTS_JSON, RESULTS_PLOT, STAGES_JSON = "results.md", "results.json", "learning_check.png", "stages.json"


# --- Results: pure functions of the eval recipe's metrics.json -----------------------------------------------------


def _cell(value: float | None, passed: bool, shown: str, **extra) -> dict:
    return {"value": value, "passed": bool(passed), "shown": shown, **extra}


def summarize_learning_check(
    metrics: Mapping[str, Mapping[str, Mapping]], *, protocol: str = "corpus", targets: Targets = Targets()
) -> dict[str, Any]:
    """Per-tag F1 of the four conditions, the overall figures, every target check and the verdict.

    ``metrics`` is the eval recipe's metrics.json (``{label: {protocol: metrics}}``) holding ``sft``, ``raft`` and
    their ``(other audio)`` controls. The tags are those the references hold. The verdict judges the final (RAFT)
    model and the RAFT-vs-SFT comparison; SFT's own checks are shown for reference.
    """
    missing = [label for label in CONDITIONS.values() if protocol not in metrics.get(label, {})]
    if missing:
        raise ValueError(
            f"eval metrics lack {missing} under protocol {protocol!r} (have {sorted(metrics)}): the learning check "
            "needs the sft and raft models evaluated with mismatched_audio_control: true"
        )
    by_condition = {key: metrics[label][protocol] for key, label in CONDITIONS.items()}
    _, tags, support = per_tag_rows({label: metrics[label] for label in MODEL_LABELS}, protocol)
    if not tags:
        raise ValueError("the held-out references hold no tags: nothing to check")
    per_tag = {
        tag: {
            "support": support[tag],
            **{key: by_condition[key]["per_tag"].get(tag, {}).get("f1", 0.0) for key in CONDITIONS},
        }
        for tag in tags
    }
    overall = {
        key: {
            name: values.get(name) for name in ("wer", "cer", "tag_f1", "tag_precision", "tag_recall", "num_samples")
        }
        for key, values in by_condition.items()
    }

    wer_cells, f1_cells, weakest_cells, other_cells = {}, {}, {}, {}
    for label in MODEL_LABELS:
        wer, f1 = overall[label]["wer"], overall[label]["tag_f1"]
        wer_cells[label] = _cell(wer, wer is not None and wer <= targets.own_wer_max, _percent(wer))
        f1_cells[label] = _cell(f1, f1 is not None and f1 >= targets.own_tag_f1_min, _f1(f1))
        weakest = min(tags, key=lambda tag: per_tag[tag][label])  # ties: the tag with more support
        weakest_f1 = per_tag[weakest][label]
        weakest_cells[label] = _cell(
            weakest_f1, weakest_f1 >= targets.own_every_tag_f1_min, f"{_f1(weakest_f1)} `[{weakest}]`", tag=weakest
        )
        other = overall[f"{label}_other_audio"]["tag_f1"]
        other_cells[label] = _cell(other, other is not None and other <= targets.other_tag_f1_max, _f1(other))

    changes = {tag: per_tag[tag][RAFT_LABEL] - per_tag[tag][SFT_LABEL] for tag in tags}
    worst = min(tags, key=lambda tag: changes[tag])
    sft_weakest = weakest_cells[SFT_LABEL]["tag"]
    before, after = per_tag[sft_weakest][SFT_LABEL], per_tag[sft_weakest][RAFT_LABEL]
    # a weakest tag already at 1.0 cannot improve: keeping it there is the most RAFT can do
    improved = after > before or before == after == 1.0
    checks = [
        _check("own_wer", "Own audio: WER", f"≤ {_percent(targets.own_wer_max, 1)}", wer_cells),
        _check("own_tag_f1", "Own audio: tag F1", f"≥ {targets.own_tag_f1_min:.2f}", f1_cells),
        _check("own_every_tag_f1", "Own audio: weakest tag", f"≥ {targets.own_every_tag_f1_min:.2f}", weakest_cells),
        _check("other_tag_f1", "Other clip's audio: tag F1", f"≤ {targets.other_tag_f1_max:.2f}", other_cells),
        _check(
            "raft_not_worse",
            "RAFT vs SFT: every tag",
            "no tag lower",
            {RAFT_LABEL: _cell(changes[worst], changes[worst] >= 0, f"{changes[worst]:+.3f} `[{worst}]`", tag=worst)},
        ),
        _check(
            "raft_better_on_weakest",
            "RAFT vs SFT: SFT's weakest tag",
            "higher",
            {
                RAFT_LABEL: _cell(
                    after - before, improved, f"`[{sft_weakest}]` {_f1(before)} → {_f1(after)}", tag=sft_weakest
                )
            },
        ),
    ]
    failed = [check["id"] for check in checks if not check["cells"][RAFT_LABEL]["passed"]]
    return {
        "protocol": protocol,
        "num_clips": overall[SFT_LABEL]["num_samples"],
        "tags": tags,
        "per_tag": per_tag,
        "overall": overall,
        "checks": checks,
        "passed": not failed,
        "failed": failed,
    }


def _check(check_id: str, title: str, target: str, cells: dict[str, dict]) -> dict:
    return {"id": check_id, "title": title, "target": target, "cells": cells}


def _percent(value: float | None, decimals: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{decimals}f}%"


def _f1(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _change(before: float | None, after: float | None, *, percent: bool = False) -> str:
    if before is None or after is None:
        return "n/a"
    return f"{100 * (after - before):+.2f} pts" if percent else f"{after - before:+.3f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def render_results(summary: Mapping[str, Any], details: Mapping[str, Any]) -> str:
    """results.md: the per-tag table, the target checks with the verdict, and how each stage was produced."""
    lines = [f"# Learning check ({details.get('scale', '?')} scale)", ""]
    if not details.get("targets_expected"):
        lines += [
            "> **Smoke scale.** This run checks that the whole chain (data → model → SFT → RAFT → eval) runs end to "
            "end; its model and data are far too small to learn the tags. The targets are the full-scale "
            "experiment's: they are reported here, not expected to pass.",
            "",
        ]
    overall, per_tag, tags = summary["overall"], summary["per_tag"], summary["tags"]
    lines += [
        f"{summary['num_clips']} held-out clips of `{details.get('dataset', '?')}` ({details.get('split', '?')}), "
        f"protocol `{summary['protocol']}`; a Voxtral-architecture model of {details.get('model_parameters', '?')} "
        "parameters trained from random weights. *Other audio*: each clip decoded from another clip's audio and "
        "scored against its own reference (a model that listens loses its tags there).",
        "",
        "## Per-tag F1",
        "",
        "| Tag | Support | SFT, own audio | SFT, other audio | RAFT, own audio | RAFT, other audio | RAFT − SFT |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for tag in tags:
        row = per_tag[tag]
        cells = " | ".join(_f1(row[key]) for key in CONDITIONS)
        lines.append(f"| `[{tag}]` | {row['support']} | {cells} | {_change(row[SFT_LABEL], row[RAFT_LABEL])} |")
    total_support = sum(per_tag[tag]["support"] for tag in tags)
    all_tags = " | ".join(_f1(overall[key]["tag_f1"]) for key in CONDITIONS)
    wers = " | ".join(_percent(overall[key]["wer"]) for key in CONDITIONS)
    lines += [
        f"| **all tags** (micro) | {total_support} | {all_tags} | "
        f"{_change(overall[SFT_LABEL]['tag_f1'], overall[RAFT_LABEL]['tag_f1'])} |",
        f"| **WER** | | {wers} | {_change(overall[SFT_LABEL]['wer'], overall[RAFT_LABEL]['wer'], percent=True)} |",
        "",
        "## Targets",
        "",
        "The verdict judges the final (RAFT) model and the RAFT-vs-SFT comparison; SFT's column is for reference.",
        "",
        "| Check | Target | SFT | RAFT |",
        "|---|---|---|---|",
    ]
    for check in summary["checks"]:
        cells = [
            f"{cell['shown']} {'✓' if cell['passed'] else '✗'}" if (cell := check["cells"].get(label)) else "—"
            for label in MODEL_LABELS
        ]
        lines.append(f"| {check['title']} | {check['target']} | {' | '.join(cells)} |")
    missed = [check["title"] for check in summary["checks"] if check["id"] in summary["failed"]]
    verdict = f"**Verdict: {'PASS' if summary['passed'] else 'FAIL'}**"
    if missed:
        verdict += f": {len(missed)} of {len(summary['checks'])} checks missed ({'; '.join(missed)})"
    verdict += "." if details.get("targets_expected") else ". Smoke scale: not expected to pass."
    lines += ["", verdict]
    stages = details.get("stages") or {}
    if stages:
        lines += ["", "## How it was produced", "", "| Stage | Time | Command |", "|---|---:|---|"]
        for name, record in stages.items():
            lines.append(f"| {name} | {_duration(record.get('seconds'))} | `{record.get('command', '')}` |")
        if details.get("sft_train_runtime") is not None:
            lines += ["", f"SFT training time (the trainer's own count): {_duration(details['sft_train_runtime'])}."]
    lines += [
        "",
        f"Files: `{RESULTS_JSON}` (everything above), `{RESULTS_PLOT}` (per-tag F1 bars), the eval report "
        f"`{details.get('eval_report', 'eval/report.md')}`, the stage logs in `logs/`.",
    ]
    return "\n".join(lines) + "\n"


def write_results(
    output_dir: str | os.PathLike,
    metrics: Mapping[str, Mapping[str, Mapping]],
    details: Mapping[str, Any],
    *,
    protocol: str = "corpus",
    targets: Targets = Targets(),
) -> dict[str, Any]:
    """Write results.md, results.json and learning_check.png into ``output_dir``; returns the summary."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize_learning_check(metrics, protocol=protocol, targets=targets)
    (output_dir / RESULTS_MD).write_text(render_results(summary, details), encoding="utf-8")
    payload = {**summary, "targets": asdict(targets), "details": dict(details)}
    (output_dir / RESULTS_JSON).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot_per_tag_f1(
        {label: metrics[label] for label in CONDITIONS.values()},
        protocol,
        output_dir / RESULTS_PLOT,
        guides={
            f"target, own audio: every tag ≥ {targets.own_every_tag_f1_min:.2f}": targets.own_every_tag_f1_min,
            f"target, other audio: all tags ≤ {targets.other_tag_f1_max:.2f}": targets.other_tag_f1_max,
        },
    )
    return summary


# --- Stages --------------------------------------------------------------------------------------------------------


class StageError(RuntimeError):
    """A stage's command failed; the message names the stage, the command and the end of its log."""


@dataclass(frozen=True)
class Stage:
    name: str
    command: list[str]  # what runs
    shown: str  # the same command as a user types it
    output_dir: Path
    done_when: tuple[str, ...]  # files under output_dir that exist only once the stage has finished
    depends_on: tuple[str, ...] = ()

    def is_done(self) -> bool:
        return all((self.output_dir / name).is_file() for name in self.done_when)


def find_repo_root() -> Path:
    """The folder holding recipes/ and data_gen/: the working directory, or the one this package sits in."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (candidate / "recipes" / "learning_check.py").is_file() and (
            candidate / "data_gen" / "generate.py"
        ).is_file():
            return candidate
    raise FileNotFoundError(
        "run the learning check from the repository root (the folder holding recipes/ and data_gen/)"
    )


def _under(root: Path, path: str | os.PathLike) -> Path:
    """A path as the stages (run from ``root``) see it: relative paths are taken from ``root``, as in the YAMLs."""
    absolute = Path(os.path.normpath(root / path))
    try:
        return absolute.relative_to(root)
    except ValueError:
        return absolute


def stage_paths(args: LearningCheckArguments, root: Path) -> dict[str, Path]:
    """Every folder the stages write, relative to ``root`` when inside it."""
    output_dir = _under(root, args.output_dir)
    data_dir = args.data_dir
    if data_dir is None:
        data_dir = yaml.safe_load((root / _under(root, args.data_config)).read_text()).get("output_dir")
        if not data_dir:
            raise ValueError(f"{args.data_config} sets no output_dir; pass --data_dir")
    data_dir = _under(root, data_dir)
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
    config = {name: str(_under(root, getattr(args, f"{name}_config"))) for name in ("data", "sft", "raft", "eval")}

    def python_command(*arguments: str) -> tuple[list[str], str]:
        return [python, *arguments], shlex.join(["python", *arguments])

    launcher = ["--num_processes", str(args.num_processes)]
    if args.accelerate_config:
        launcher = ["--config_file", str(_under(root, args.accelerate_config))]

    def accelerate_command(script: str, *options: str) -> tuple[list[str], str]:
        launch = [*launcher, script, *options]
        return [python, "-m", "accelerate.commands.launch", *launch], shlex.join(["accelerate", "launch", *launch])

    sizes = {
        "--vocab-size": args.model_vocab_size,
        "--text-layers": args.model_text_layers,
        "--audio-layers": args.model_audio_layers,
        "--hidden-size": args.model_hidden_size,
        "--num-attention-heads": args.model_num_attention_heads,
    }
    size_options = [item for option, value in sizes.items() if value is not None for item in (option, str(value))]
    return [
        Stage(
            "data",
            *python_command("data_gen/generate.py", "--config", config["data"], "--output_dir", str(paths["data"])),
            root / paths["data"],
            ("dataset/dataset_dict.json", "summary.json"),
        ),
        Stage(
            "model",
            *python_command("-m", "evoxtral.model.tiny", "--output-dir", str(paths["model"]), "--preset", args.model_preset,
                            *size_options, "--seed", str(args.model_seed)),
            root / paths["model"],
            ("config.json", "tokenizer_config.json"),
        ),
        Stage(
            "sft",
            *accelerate_command("recipes/sft.py", "--config", config["sft"],
                                "--model_name_or_path", str(paths["model"]), "--dataset_name", str(paths["dataset"]),
                                "--output_dir", str(paths["sft"])),
            root / paths["sft"],
            ("config.json", "recipe.yaml"),
            ("data", "model"),
        ),
        Stage(
            "raft",
            *accelerate_command("recipes/raft.py", "--config", config["raft"],
                                "--model_name_or_path", str(paths["sft"]), "--dataset_name", str(paths["dataset"]),
                                "--output_dir", str(paths["raft"])),
            root / paths["raft"],
            ("config.json", "raft_summary.json"),
            ("data", "sft"),
        ),
        Stage(
            "eval",
            *python_command("recipes/eval.py", "--config", config["eval"], "--dataset", str(paths["dataset"]),
                            "--models", f"{SFT_LABEL}={paths['sft']}", f"{RAFT_LABEL}={paths['raft']}",
                            "--mismatched_audio_control", "true", "--output_dir", str(paths["eval"])),
            root / paths["eval"],
            ("metrics.json", "report.md", "per_tag_f1.png"),
            ("data", "sft", "raft"),
        ),
    ]  # fmt: skip


def run_logged(command: Sequence[str], log_path: Path, *, cwd: Path, env: Mapping[str, str]) -> int:
    """Run ``command``, showing its output (progress bars included) and appending it to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console = getattr(sys.stdout, "buffer", None)
    with (
        log_path.open("ab") as log,
        subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process,
    ):
        for chunk in iter(lambda: process.stdout.read1(1 << 16), b""):
            log.write(chunk)
            log.flush()
            if console is None:
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            else:
                console.write(chunk)
                console.flush()
    return process.returncode


def log_tail(path: Path, num_lines: int = 25) -> str:
    """The last lines of a log, each progress-bar line shown in its final state."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join([line for line in lines if line.strip()][-num_lines:])


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def run_stages(stages: Sequence[Stage], root: Path, logs_dir: Path, records_path: Path) -> dict[str, dict]:
    """Run the stages in order, skipping those already done; returns each stage's record (command, seconds)."""
    records = _read_json(records_path) or {}
    rebuilt: set[str] = set()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    for number, stage in enumerate(stages, 1):
        header = f"[{number}/{len(stages)}] {stage.name}"
        stale = sorted(rebuilt.intersection(stage.depends_on))
        if stage.is_done() and not stale:
            print(f"{header}: done already ({stage.output_dir}); delete that folder to run it again")
            records.setdefault(stage.name, {"command": stage.shown, "seconds": None})
            continue
        if stale and stage.output_dir.exists():
            print(f"{header}: {', '.join(stale)} rebuilt in this run, so {stage.output_dir} is rebuilt too")
            shutil.rmtree(stage.output_dir)
        print(f"{header}: {stage.shown}", flush=True)
        started = time.monotonic()
        log_path = logs_dir / f"{stage.name}.log"
        returncode = run_logged(stage.command, log_path, cwd=root, env=env)
        if returncode != 0 or not stage.is_done():
            problem = f"exited with code {returncode}" if returncode else f"left no {', '.join(stage.done_when)}"
            raise StageError(
                f"learning check stage {stage.name!r} {problem}.\ncommand: {stage.shown}\nlog: {log_path}\n"
                f"last lines:\n{log_tail(log_path)}\nFix the cause and run the same command again: finished "
                "stages are skipped."
            )
        records[stage.name] = {"command": stage.shown, "seconds": round(time.monotonic() - started, 1)}
        rebuilt.add(stage.name)
        records_path.parent.mkdir(parents=True, exist_ok=True)
        records_path.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    return {stage.name: records[stage.name] for stage in stages}


def run_learning_check(args: LearningCheckArguments) -> dict[str, Any]:
    """All stages, then results.md / results.json / learning_check.png in ``output_dir``; returns the summary."""
    from evoxtral.model.tiny import count_parameters

    root = find_repo_root()
    paths = stage_paths(args, root)
    output_dir = root / paths["output"]
    started = time.monotonic()
    stages = run_stages(plan_stages(args, root), root, root / paths["logs"], output_dir / STAGES_JSON)

    metrics = json.loads((root / paths["eval"] / "metrics.json").read_text(encoding="utf-8"))
    eval_settings = yaml.safe_load((root / _under(root, args.eval_config)).read_text()) or {}
    sft_train = _read_json(root / paths["sft"] / "train_results.json") or {}
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
    print()
    print((output_dir / RESULTS_MD).read_text(encoding="utf-8"))
    verdict = "PASS" if summary["passed"] else "FAIL" + ("" if args.targets_expected else " (smoke scale: expected)")
    print(
        f"Learning check ({args.scale}) finished in {_duration(time.monotonic() - started)}: {verdict}. "
        f"Wrote {output_dir}/: {RESULTS_MD}, {RESULTS_JSON}, {RESULTS_PLOT}, {STAGES_JSON}; stages in "
        f"{', '.join(str(paths[name]) for name in ('data', 'model', 'sft', 'raft', 'eval'))}."
    )
    return summary


def parse_learning_check_args(argv: Sequence[str] | None = None) -> LearningCheckArguments:
    """``--scale tiny|full`` picks recipes/learning_check/<scale>/learning_check.yaml unless ``--config`` is given."""
    from trl import TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in argv:
        scale_parser = argparse.ArgumentParser(add_help=False)
        scale_parser.add_argument("--scale", default="tiny", choices=SCALES)
        scale = scale_parser.parse_known_args(argv)[0].scale
        argv = ["--config", str(find_repo_root() / CONFIG_DIR / scale / "learning_check.yaml"), *argv]
    (args,) = TrlParser((LearningCheckArguments,)).parse_args_and_config(argv)
    return args
