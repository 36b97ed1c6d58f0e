"""The learning check's results: pure functions of the eval recipe's metrics.json. Per-tag F1 with the clip's own
audio and another clip's, WER, SFT next to RAFT, every target check and the verdict, written as results.md,
results.json and learning_check.png."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evoxtral.configs import Targets
from evoxtral.evaluation.decoding import MISMATCHED_SUFFIX
from evoxtral.evaluation.plots import plot_per_tag_f1
from evoxtral.evaluation.report import per_tag_rows
from evoxtral.utils.formatting import duration, percent

SFT_LABEL, RAFT_LABEL = "sft", "raft"
MODEL_LABELS = (SFT_LABEL, RAFT_LABEL)
# results.json condition keys -> the eval recipe's labels for them
CONDITIONS = {
    SFT_LABEL: SFT_LABEL,
    f"{SFT_LABEL}_other_audio": SFT_LABEL + MISMATCHED_SUFFIX,
    RAFT_LABEL: RAFT_LABEL,
    f"{RAFT_LABEL}_other_audio": RAFT_LABEL + MISMATCHED_SUFFIX,
}
RESULTS_MD, RESULTS_JSON, RESULTS_PLOT = "results.md", "results.json", "learning_check.png"
RAFT_VS_SFT_CHECKS = ("raft_not_worse", "raft_better_on_weakest")


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
    checks = target_checks(tags, per_tag, overall, targets)
    judged = [check for check in checks if targets.judge_raft_vs_sft or check["id"] not in RAFT_VS_SFT_CHECKS]
    failed = [check["id"] for check in judged if not check["cells"][RAFT_LABEL]["passed"]]
    return {
        "protocol": protocol,
        "num_clips": overall[SFT_LABEL]["num_samples"],
        "tags": tags,
        "per_tag": per_tag,
        "overall": overall,
        "checks": checks,
        "passed": not failed,
        "failed": failed,
        "judged_raft_vs_sft": targets.judge_raft_vs_sft,
    }


def target_checks(tags: list[str], per_tag: dict, overall: dict, targets: Targets) -> list[dict]:
    """The six checks, each with a cell per model it judges: value, passed, how it is shown."""
    wer_cells, f1_cells, weakest_cells, other_cells = {}, {}, {}, {}
    for label in MODEL_LABELS:
        wer, f1 = overall[label]["wer"], overall[label]["tag_f1"]
        wer_cells[label] = _cell(wer, wer is not None and wer <= targets.own_wer_max, percent(wer))
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
    return [
        _check("own_wer", "Own audio: WER", f"≤ {percent(targets.own_wer_max, 1)}", wer_cells),
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


def _check(check_id: str, title: str, target: str, cells: dict[str, dict]) -> dict:
    return {"id": check_id, "title": title, "target": target, "cells": cells}


def _f1(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _change(before: float | None, after: float | None, *, percent: bool = False) -> str:
    if before is None or after is None:
        return "n/a"
    return f"{100 * (after - before):+.2f} pts" if percent else f"{after - before:+.3f}"


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
    wers = " | ".join(percent(overall[key]["wer"]) for key in CONDITIONS)
    lines += [
        f"| **all tags** (micro) | {total_support} | {all_tags} | "
        f"{_change(overall[SFT_LABEL]['tag_f1'], overall[RAFT_LABEL]['tag_f1'])} |",
        f"| **WER** | | {wers} | {_change(overall[SFT_LABEL]['wer'], overall[RAFT_LABEL]['wer'], percent=True)} |",
        "",
        "## Targets",
        "",
        "The verdict judges the final (RAFT) model"
        + (
            " and the RAFT-vs-SFT comparison"
            if summary.get("judged_raft_vs_sft", True)
            else " (the RAFT-vs-SFT rows are shown, not judged, at this scale)"
        )
        + "; SFT's column is for reference.",
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
            lines.append(f"| {name} | {duration(record.get('seconds'))} | `{record.get('command', '')}` |")
        if details.get("sft_train_runtime") is not None:
            lines += ["", f"SFT training time (the trainer's own count): {duration(details['sft_train_runtime'])}."]
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
