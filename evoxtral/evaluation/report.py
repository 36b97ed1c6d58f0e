"""The evaluation report: Table 2 (core metrics, models side by side, one table per protocol), Table 3 (per-tag F1
with support) and the own-audio / other-audio comparison, as in the technical report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from evoxtral.evaluation.decoding import CHANCE_LABEL, MISMATCHED_SUFFIX
from evoxtral.utils.formatting import percent

# Table 2 rows, in the report's order: (key, title, lower is better, decimals in percent, protocols that have it)
BOTH = ("corpus", "evoxtral")
CORE_ROWS = [
    ("wer", "WER ↓", True, 2, BOTH),
    ("cer", "CER ↓", True, 2, BOTH),
    ("tag_f1", "Tag F1 ↑", False, 1, BOTH),
    ("tag_precision", "Tag Precision ↑", False, 1, BOTH),
    ("tag_recall", "Tag Recall ↑", False, 1, BOTH),
    ("tag_macro_f1", "Tag F1, macro ↑", False, 1, ("corpus",)),
    ("emphasis_f1", "Emphasis F1 ↑", False, 1, BOTH),
    ("tag_hallucination_rate", "Tag Hallucination ↓", True, 1, BOTH),
    ("tag_false_discovery_rate", "Tag False Discovery ↓", True, 1, ("corpus",)),
]
PROTOCOL_TITLES = {
    "evoxtral": "protocol=evoxtral (the published Evoxtral-Bench: per-clip averages, raw tags)",
    "corpus": "protocol=corpus (pooled counts, canonical tags, normalised WER)",
}


def render_core_table(results: dict[str, dict[str, dict]], protocol: str) -> str:
    """Table 2: metrics as rows, models side by side, the best model per row in bold and named."""
    labels = [label for label in results if protocol in results[label]]
    lines = [
        f"| Metric | {' | '.join(labels)} | Best |",
        f"|---|{'---:|' * len(labels)}---|",
    ]
    for key, title, lower_is_better, decimals, protocols in CORE_ROWS:
        if protocol not in protocols:
            continue
        values = [results[label][protocol].get(key) for label in labels]
        known = [value for value in values if value is not None]
        best = (min(known) if lower_is_better else max(known)) if known else None
        winners = [label for label, value in zip(labels, values) if value is not None and value == best]
        if len(winners) == len(labels):  # a tie across all models names nobody
            winners = []
        cells = []
        for label, value in zip(labels, values):
            cell = percent(value, decimals)
            interval = results[label][protocol].get(f"{key}_ci")
            if interval and None not in interval:
                cell += f" [{100 * interval[0]:.{decimals}f}, {100 * interval[1]:.{decimals}f}]"
            cells.append(f"**{cell}**" if label in winners else cell)
        best_label = ", ".join(winners) or "—"
        lines.append(f"| {title} | {' | '.join(cells)} | {best_label} |")
    return "\n".join(lines)


def _relative_change(before: float, after: float) -> str:
    if math.isclose(before, after):
        return "—"
    if before == 0:
        return "n/a"
    return f"{100 * (after - before) / before:+.1f}%"


def per_tag_rows(results: dict[str, dict[str, dict]], protocol: str) -> tuple[list[str], list[str], dict[str, int]]:
    """Models scored under ``protocol``, the tags the references hold (most frequent first), their support."""
    labels = [label for label in results if protocol in results[label]]
    support = {}
    for label in labels:
        for tag, row in results[label][protocol]["per_tag"].items():
            support[tag] = max(support.get(tag, 0), row["support"])
    tags = sorted((tag for tag in support if support[tag] > 0), key=lambda tag: (-support[tag], tag))
    return labels, tags, support


def render_per_tag_table(results: dict[str, dict[str, dict]], protocol: str) -> str:
    """Table 3: per-tag F1 of every model, the change between the last two, and the reference support."""
    labels, tags_in_references, support = per_tag_rows(results, protocol)
    with_change = len(labels) > 1
    header = f"| Tag | {' | '.join(f'{label} F1' for label in labels)} |{' Δ |' if with_change else ''} Support |"
    lines = [header, f"|---|{'---:|' * len(labels)}{'---:|' if with_change else ''}---:|"]
    for tag in tags_in_references:
        f1s = [results[label][protocol]["per_tag"].get(tag, {}).get("f1", 0.0) for label in labels]
        change = f" {_relative_change(f1s[-2], f1s[-1])} |" if with_change else ""
        lines.append(f"| `[{tag}]` | {' | '.join(f'{f1:.3f}' for f1 in f1s)} |{change} {support[tag]} |")
    if not tags_in_references:
        lines.append("| (no tags in the references) |" + " |" * (len(labels) + with_change + 1))
    return "\n".join(lines)


def render_report(results: dict[str, dict[str, dict]], protocols: Sequence[str], details: dict[str, Any]) -> str:
    first = next(iter(results.values()), {})
    num_samples = next(iter(first.values()), {}).get("num_samples", 0)
    sections = [
        "# Evoxtral-Bench results",
        "",
        f"{num_samples} clips of `{details['dataset']}` ({details['split']}), greedy decoding, at most "
        f"{details['max_new_tokens']} new tokens."
        + (
            f" Intervals: 95% bootstrap over clips ({details['bootstrap']} resamples)."
            if details.get("bootstrap")
            else ""
        ),
    ]
    for protocol in protocols:
        sections += [
            "",
            f"## Table 2: core metrics, {PROTOCOL_TITLES[protocol]}",
            "",
            render_core_table(results, protocol),
        ]
    for protocol in protocols:
        own = {label: value for label, value in results.items() if not label.endswith(MISMATCHED_SUFFIX)}
        sections += ["", f"## Table 3: per-tag F1, {protocol} protocol", "", render_per_tag_table(own, protocol)]
    controls = [label for label in results if label.endswith(MISMATCHED_SUFFIX) and label != CHANCE_LABEL]
    if controls:
        sections += ["", "## Control: own audio vs other audio", ""]
        sections += [
            "Each clip decoded from another clip's audio (a seeded derangement) and scored against its own "
            "reference. A model that listens loses most of its tag F1 here; what remains comes from text priors.",
        ]
        chance = results.get(CHANCE_LABEL, {}).get(protocols[0])
        if chance:
            sections += [
                "",
                f"Chance level: the reference of the clip whose audio was given, scored against this clip's, has tag "
                f"F1 {percent(chance['tag_f1'], 1)} and WER {percent(chance['wer'])} ({protocols[0]} protocol): what "
                "a perfect listener scores in this control (row `chance (other audio)` in Table 2).",
            ]
        for control in controls:
            label = control[: -len(MISMATCHED_SUFFIX)]
            pair = {label: results[label], control: results[control]}
            sections += ["", f"### {label}, {protocols[0]} protocol", "", render_per_tag_table(pair, protocols[0])]
    if details.get("skipped"):
        sections += ["", "## Skipped", ""] + [f"- {problem}" for problem in details["skipped"]]
    return "\n".join(sections) + "\n"
