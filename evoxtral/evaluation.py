"""Evaluation runs: decode a dataset split with one or more models, score with Evoxtral-Bench, report like a paper.

``recipes/eval.py`` parses arguments and calls :func:`run_evaluation`. A run writes, under its output folder:

* ``predictions/<label>.jsonl``: one line per clip (reference, prediction, which clip's audio was decoded), written
  batch by batch, so a killed run resumes where it stopped;
* ``metrics.json``: every model's metrics under every protocol;
* ``report.md``: Table 2 (core metrics, models side by side, one table per protocol) and Table 3 (per-tag F1 with
  support), plus the own-audio / other-audio comparison when the control ran;
* ``per_tag_f1.png``: per-tag F1 bars for every model.

The mismatched-audio control decodes every clip with another clip's audio (a seeded derangement) and scores it
against the clip's own reference: a model that listens should fall to chance there, one that guesses tags from
priors will not.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evoxtral.configs import EvalArguments
from evoxtral.data.splits import clip_ids, decodable_clips, load_split
from evoxtral.scoring.evoxtral_bench import compute_metrics

MISMATCHED_SUFFIX = " (other audio)"

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


@dataclass(frozen=True)
class ModelSpec:
    label: str
    model: str
    adapter: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``LABEL=MODEL`` or ``LABEL=MODEL+ADAPTER`` (MODEL: hub id, folder or built-in name)."""
        label, separator, rest = text.partition("=")
        model, _, adapter = rest.partition("+")
        if not separator or not label.strip() or not model.strip():
            raise ValueError(f"model spec {text!r}: expected LABEL=MODEL or LABEL=MODEL+ADAPTER")
        return cls(label.strip(), model.strip(), adapter.strip() or None)


def mismatched_audio_order(num_clips: int, seed: int = 0) -> list[int]:
    """A seeded derangement: clip i is decoded from clip order[i]'s audio, never its own."""
    if num_clips < 2:
        raise ValueError(f"the mismatched-audio control needs at least 2 clips, got {num_clips}")
    rng = np.random.default_rng(seed)
    while True:  # about e tries on average: a random permutation is a derangement with probability ~1/e
        order = rng.permutation(num_clips)
        if not (order == np.arange(num_clips)).any():
            return order.tolist()


# --- Decoding with resume ------------------------------------------------------------------------------------------


def _read_done(path: Path, expected: list[dict]) -> list[dict]:
    """Rows already decoded by an earlier run of the same model on the same clips; a torn last line is dropped."""
    if not path.exists():
        return []
    done = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            done.append(row)
    for row, want in zip(done, expected):
        if any(row.get(key) != value for key, value in want.items()):
            raise ValueError(
                f"{path} was written by a different run (clip {row.get('id')}: {row} vs {want}); "
                "use another output_dir or --overwrite"
            )
    return done[: len(expected)]


def decode_predictions(
    spec: ModelSpec,
    audios: Sequence[Any],
    rows: list[dict],
    path: Path,
    *,
    batch_size: int,
    max_new_tokens: int,
    load,
    **generate_kwargs,
) -> list[str]:
    """Transcribe ``audios`` (aligned with ``rows``) into ``path``, resuming it; ``load()`` gives (model, processor).

    The model is loaded only when something is left to decode.
    """
    from tqdm.auto import tqdm

    done = _read_done(path, rows)
    if len(done) == len(rows):
        return [row["prediction"] for row in done]
    from evoxtral.model.inference import transcribe

    model, processor = load()
    path.parent.mkdir(parents=True, exist_ok=True)
    # rewrite what was read, so a torn last line cannot sit in the middle of the file
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in done), encoding="utf-8")
    with (
        path.open("a", encoding="utf-8") as out,
        tqdm(total=len(rows), initial=len(done), desc=spec.label, unit="clip") as bar,
    ):
        for start in range(len(done), len(rows), batch_size):
            batch = audios[start : start + batch_size]
            texts = transcribe(
                model, processor, batch, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=False,
                **generate_kwargs,
            )  # fmt: skip
            for row, text in zip(rows[start : start + batch_size], texts):
                row = {**row, "prediction": text}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                done.append(row)
            out.flush()
            bar.update(len(texts))
    return [row["prediction"] for row in done]


# --- Scoring and reports -------------------------------------------------------------------------------------------


def score_predictions(predictions, references, protocols: Sequence[str], **options) -> dict[str, dict]:
    return {
        protocol: compute_metrics(predictions, references, protocol=protocol, **_options_for(protocol, options))
        for protocol in protocols
    }


def _options_for(protocol: str, options: dict) -> dict:
    # collar, normalize and min_support only mean something under the corpus protocol
    if protocol == "evoxtral":
        return {key: value for key, value in options.items() if key in ("bootstrap", "seed")}
    return options


def _percent(value: float | None, decimals: int) -> str:
    return "n/a" if value is None else f"{100 * value:.{decimals}f}%"


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
            cell = _percent(value, decimals)
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


def _per_tag_rows(results: dict[str, dict[str, dict]], protocol: str) -> tuple[list[str], list[str], dict[str, int]]:
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
    labels, tags_in_references, support = _per_tag_rows(results, protocol)
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


def plot_per_tag_f1(
    results: dict[str, dict[str, dict]], protocol: str, path: Path, guides: dict[str, float] | None = None
) -> Path:
    """Grouped horizontal bars of per-tag F1, one colour per model, tags ordered by support.

    guides: {legend label: F1} drawn as dashed vertical lines (e.g. the targets a run is judged against).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, tags, support = _per_tag_rows(results, protocol)
    height = 0.8 / max(len(labels), 1)
    figure, axes = plt.subplots(figsize=(9, 1.5 + 0.3 * max(len(tags), 1) * max(len(labels), 1) ** 0.5))
    positions = np.arange(len(tags))
    for offset, label in enumerate(labels):
        f1s = [results[label][protocol]["per_tag"].get(tag, {}).get("f1", 0.0) for tag in tags]
        hatch = "//" if label.endswith(MISMATCHED_SUFFIX) else None
        axes.barh(positions + offset * height, f1s, height=height, label=label, hatch=hatch)
    for (label, value), style in zip((guides or {}).items(), ("--", ":", "-.")):
        axes.axvline(value, color="black", linestyle=style, linewidth=1, label=label)
    axes.set_yticks(positions + height * (len(labels) - 1) / 2)
    axes.set_yticklabels([f"[{tag}] ({support[tag]})" for tag in tags])
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("F1")
    axes.set_title(f"Per-tag F1 ({protocol} protocol; support in parentheses)")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


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
    controls = [label for label in results if label.endswith(MISMATCHED_SUFFIX)]
    if controls:
        sections += ["", "## Control: own audio vs other audio", ""]
        sections += [
            "Each clip decoded from another clip's audio (a seeded derangement) and scored against its own "
            "reference. A model that listens loses most of its tag F1 here; what remains comes from text priors.",
        ]
        for control in controls:
            label = control[: -len(MISMATCHED_SUFFIX)]
            pair = {label: results[label], control: results[control]}
            sections += ["", f"### {label}, {protocols[0]} protocol", "", render_per_tag_table(pair, protocols[0])]
    if details.get("skipped"):
        sections += ["", "## Skipped", ""] + [f"- {problem}" for problem in details["skipped"]]
    return "\n".join(sections) + "\n"


# --- A whole run ---------------------------------------------------------------------------------------------------


def _log_to_wandb(args: EvalArguments, results: dict, chart: Path, predictions: dict[str, list[dict]]) -> None:
    try:
        import wandb

        run = wandb.init(
            project=args.wandb_project, name=args.run_name, job_type="eval", config=asdict(args), dir=args.output_dir
        )
    except Exception as error:  # no account, no network: the run's files are already written
        print(f"W&B logging skipped ({error}); WANDB_MODE=offline logs without an account.")
        return
    scalars = {}
    per_tag = wandb.Table(columns=["model", "protocol", "tag", "precision", "recall", "f1", "support"])
    for label, by_protocol in results.items():
        for protocol, metrics in by_protocol.items():
            for key, value in metrics.items():
                if isinstance(value, float):
                    scalars[f"{label}/{protocol}/{key}"] = value
            for tag, row in metrics["per_tag"].items():
                per_tag.add_data(label, protocol, tag, row["precision"], row["recall"], row["f1"], row["support"])
    samples = wandb.Table(columns=["model", "id", "audio_id", "reference", "prediction"])
    for label, rows in predictions.items():
        for row in rows:
            samples.add_data(label, row["id"], row["audio_id"], row["reference"], row["prediction"])
    run.log({**scalars, "per_tag": per_tag, "predictions": samples, "per_tag_f1": wandb.Image(str(chart))})
    run.finish()


def run_evaluation(args: EvalArguments) -> dict[str, dict[str, dict]]:
    """Decode, score and report; returns {model label: {protocol: metrics}}."""
    from functools import cache

    from evoxtral.model.loading import ModelLoadError, load_model_and_processor
    from evoxtral.scoring.evoxtral_bench import PROTOCOLS

    specs = [ModelSpec.parse(text) for text in args.models]
    if len({spec.label for spec in specs}) != len(specs):
        raise ValueError(f"model labels must be unique: {[spec.label for spec in specs]}")
    unknown = [protocol for protocol in args.protocols if protocol not in PROTOCOLS]
    if unknown or not args.protocols:
        raise ValueError(f"protocols must be among {PROTOCOLS}, got {args.protocols}")
    output_dir = Path(args.output_dir)
    data = load_split(args.dataset, args.split, args.max_samples, audio_column=args.audio_column)
    audios, ids, references = data[args.audio_column], clip_ids(data, args.id_column), data[args.text_column]
    keep, skipped = decodable_clips(audios, ids)
    audios, ids, references = [audios[i] for i in keep], [ids[i] for i in keep], [references[i] for i in keep]
    if not audios:
        raise ValueError(f"no decodable clips in {args.dataset} ({args.split})")
    conditions = [("", "", list(range(len(audios))))]  # (label suffix, file suffix, audio source of each clip)
    if args.mismatched_audio_control:
        conditions.append((MISMATCHED_SUFFIX, ".other_audio", mismatched_audio_order(len(audios), args.seed)))

    options = {"collar": args.collar, "min_support": args.min_support, "bootstrap": args.bootstrap, "seed": args.seed}
    results, predictions_by_label = {}, {}
    for spec in specs:
        load = cache(
            lambda spec=spec: load_model_and_processor(
                spec.model, adapter=spec.adapter, dtype=args.dtype, device=args.device
            )
        )
        for suffix, file_suffix, order in conditions:
            label = spec.label + suffix
            path = output_dir / "predictions" / f"{spec.label}{file_suffix}.jsonl"
            if args.overwrite and path.exists():
                path.unlink()
            rows = [
                {
                    "id": ids[i],
                    "audio_id": ids[source],
                    "reference": references[i],
                    "model": spec.model,
                    "adapter": spec.adapter,
                }
                for i, source in enumerate(order)
            ]
            try:
                predictions = decode_predictions(
                    spec, [audios[source] for source in order], rows, path, batch_size=args.batch_size,
                    max_new_tokens=args.max_new_tokens, load=load,
                )  # fmt: skip
            except ModelLoadError as error:
                if not args.skip_missing_models:
                    raise
                skipped.append(f"model {spec.label}: {error}")
                print(f"Skipping model {spec.label}: {error}")
                break
            results[label] = score_predictions(predictions, references, args.protocols, **options)
            predictions_by_label[label] = [{**row, "prediction": text} for row, text in zip(rows, predictions)]
        load.cache_clear()  # free this model before loading the next
    if not results:
        raise ValueError("no model could be evaluated: " + "; ".join(skipped))

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    details = {**asdict(args), "skipped": skipped}
    report = output_dir / "report.md"
    report.write_text(render_report(results, args.protocols, details), encoding="utf-8")
    chart = plot_per_tag_f1(results, args.protocols[0], output_dir / "per_tag_f1.png")
    if "wandb" in args.report_to:
        _log_to_wandb(args, results, chart, predictions_by_label)

    print(f"\nTable 2, {PROTOCOL_TITLES[args.protocols[0]]}\n")
    print(render_core_table(results, args.protocols[0]))
    print(
        f"\n{len(audios)} clips x {len(results)} runs. Wrote {output_dir}/: predictions/*.jsonl, metrics.json, report.md, per_tag_f1.png"
    )
    return results
