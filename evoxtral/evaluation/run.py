"""A whole evaluation run (the logic of recipes/eval.py): decode every model on the split's clips, and on other
clips' audio for the mismatched-audio control, score under every protocol, write metrics.json, report.md and the
chart, and log to W&B when asked."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from functools import cache, partial
from pathlib import Path

from evoxtral.configs import EvalArguments
from evoxtral.data.splits import clip_ids, decodable_clips, load_split
from evoxtral.evaluation.decoding import (
    CHANCE_LABEL,
    MISMATCHED_SUFFIX,
    ModelSpec,
    decode_predictions,
    mismatched_audio_order,
)
from evoxtral.evaluation.plots import plot_per_tag_f1
from evoxtral.evaluation.report import PROTOCOL_TITLES, render_core_table, render_report
from evoxtral.model.encoder_cache import SharedEncoderStates
from evoxtral.model.loading import ModelLoadError, load_model_and_processor
from evoxtral.scoring.evoxtral_bench import PROTOCOLS, compute_metrics
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)


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


def log_to_wandb(args: EvalArguments, results: dict, chart: Path, predictions: dict[str, list[dict]]) -> None:
    try:
        import wandb

        run = wandb.init(
            project=args.wandb_project, name=args.run_name, job_type="eval", config=asdict(args), dir=args.output_dir
        )
    except Exception as error:  # no account, no network: the run's files are already written
        logger.warning("W&B logging skipped (%s); WANDB_MODE=offline logs without an account.", error)
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


def evaluation_clips(args: EvalArguments) -> tuple[list, list[str], list[str], list[str]]:
    """(audios, ids, references) of the clips whose audio decodes, and a line on each one that does not."""
    data = load_split(args.dataset, args.split, args.max_samples, audio_column=args.audio_column)
    audios, ids, references = data[args.audio_column], clip_ids(data, args.id_column), data[args.text_column]
    keep, skipped = decodable_clips(audios, ids)
    if not keep:
        raise ValueError(f"no decodable clips in {args.dataset} ({args.split})")
    return [audios[i] for i in keep], [ids[i] for i in keep], [references[i] for i in keep], skipped


def evaluate_model(
    args: EvalArguments,
    spec: ModelSpec,
    clips: tuple[list, list[str], list[str]],
    conditions: list[tuple],
    shared_states: SharedEncoderStates | None = None,
) -> Iterator[tuple[str, dict, list[dict]]]:
    """Decode (resuming) and score one model, condition by condition: (label, metrics by protocol, rows with
    predictions). The model is loaded only when a condition has clips left to decode, and freed at the end; a
    model or adapter that cannot be loaded raises ModelLoadError there."""
    audios, ids, references = clips
    load = cache(
        lambda: load_model_and_processor(spec.model, adapter=spec.adapter, dtype=args.dtype, device=args.device)
    )
    options = {"collar": args.collar, "min_support": args.min_support, "bootstrap": args.bootstrap, "seed": args.seed}
    try:
        for suffix, file_suffix, order in conditions:
            path = Path(args.output_dir) / "predictions" / f"{spec.label}{file_suffix}.jsonl"
            if args.overwrite and path.exists():
                path.unlink()
            rows = [
                {"id": ids[i], "audio_id": ids[source], "reference": references[i], "model": spec.model,
                 "adapter": spec.adapter}
                for i, source in enumerate(order)
            ]  # fmt: skip
            states = None
            if shared_states is not None:
                states = partial(_states_in_order, shared_states, order)
            predictions = decode_predictions(
                spec, [audios[source] for source in order], rows, path, batch_size=args.batch_size,
                max_new_tokens=args.max_new_tokens, load=load, encoder_states=states,
            )  # fmt: skip
            metrics = score_predictions(predictions, references, args.protocols, **options)
            yield spec.label + suffix, metrics, [{**row, "prediction": text} for row, text in zip(rows, predictions)]
    finally:
        load.cache_clear()  # free this model before loading the next


def _states_in_order(shared_states: SharedEncoderStates, order: list[int], model, processor) -> list:
    states = shared_states.states(model, processor)
    return [states[source] for source in order]


def chance_metrics(references: list[str], order: list[int], protocols: Sequence[str], **options) -> dict[str, dict]:
    """What a perfect listener scores under the mismatched-audio control: the reference of the clip whose audio it
    was given, scored against this clip's reference (the chance overlap of two clips' tags and words)."""
    return score_predictions([references[source] for source in order], references, protocols, **options)


def run_evaluation(args: EvalArguments) -> dict[str, dict[str, dict]]:
    """Decode, score and report; returns {model label: {protocol: metrics}}."""
    specs = [ModelSpec.parse(text) for text in args.models]
    if len({spec.label for spec in specs}) != len(specs):
        raise ValueError(f"model labels must be unique: {[spec.label for spec in specs]}")
    unknown = [protocol for protocol in args.protocols if protocol not in PROTOCOLS]
    if unknown or not args.protocols:
        raise ValueError(f"protocols must be among {PROTOCOLS}, got {args.protocols}")
    audios, ids, references, skipped = evaluation_clips(args)
    conditions = [("", "", list(range(len(audios))))]  # (label suffix, file suffix, audio source of each clip)
    if args.mismatched_audio_control:
        conditions.append((MISMATCHED_SUFFIX, ".other_audio", mismatched_audio_order(len(audios), args.seed)))
    results, predictions_by_label = {}, {}
    shared_states = SharedEncoderStates(audios, batch_size=args.batch_size) if args.share_encoder_states else None
    for spec in specs:
        try:
            clips = (audios, ids, references)
            for label, metrics, rows in evaluate_model(args, spec, clips, conditions, shared_states):
                results[label], predictions_by_label[label] = metrics, rows
        except ModelLoadError as error:
            if not args.skip_missing_models:
                raise
            skipped.append(f"model {spec.label}: {error}")
            logger.warning("Skipping model %s: %s", spec.label, error)
    if not results:
        raise ValueError("no model could be evaluated: " + "; ".join(skipped))
    if args.mismatched_audio_control:
        options = {"collar": args.collar, "min_support": args.min_support, "bootstrap": 0, "seed": args.seed}
        results[CHANCE_LABEL] = chance_metrics(references, conditions[-1][2], args.protocols, **options)
    write_evaluation(args, results, predictions_by_label, skipped)
    logger.info(
        "\nTable 2, %s\n\n%s\n\n%d clips x %d runs. Wrote %s/: predictions/*.jsonl, metrics.json, report.md, "
        "per_tag_f1.png",
        PROTOCOL_TITLES[args.protocols[0]],
        render_core_table(results, args.protocols[0]),
        len(audios),
        len(results),
        args.output_dir,
    )
    return results


def write_evaluation(
    args: EvalArguments, results: dict, predictions_by_label: dict[str, list[dict]], skipped: list[str]
) -> None:
    """metrics.json, report.md and per_tag_f1.png in output_dir, and the run on W&B when asked."""
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    details = {**asdict(args), "skipped": skipped}
    (output_dir / "report.md").write_text(render_report(results, args.protocols, details), encoding="utf-8")
    chart = plot_per_tag_f1(results, args.protocols[0], output_dir / "per_tag_f1.png")
    if "wandb" in args.report_to:
        log_to_wandb(args, results, chart, predictions_by_label)
