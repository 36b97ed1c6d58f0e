"""What a finished run tells the person who ran it: what was trained, how it scored, and where its files are.

The summaries are logged once, by the main process (see evoxtral.utils.logging).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoxtral.scoring.rewards import REWARD_QUANTILES
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)


def log_sft_summary(
    output_dir: str,
    *,
    global_step: int,
    train_metrics: dict[str, float],
    evaluations: list[dict[str, float]],
    bench_scores: dict[str, float],
    is_adapter: bool,
) -> None:
    """Steps, epochs and losses, the last Evoxtral-Bench scores, the folder, and how to merge an adapter."""
    lines = [
        f"SFT done: {global_step} steps, {train_metrics.get('epoch', 0):.2f} epochs, "
        f"train loss {train_metrics.get('train_loss', float('nan')):.4f}",
    ]
    if evaluations:
        lines.append(f"eval loss {evaluations[0]['eval_loss']:.4f} -> {evaluations[-1]['eval_loss']:.4f}")
    if bench_scores:
        shown = {key: value for key, value in bench_scores.items() if not key.startswith("num_")}
        lines.append("Evoxtral-Bench: " + ", ".join(f"{key} {value:.3g}" for key, value in shown.items()))
    lines.append(f"{'adapter' if is_adapter else 'model'} + processor + README.md + recipe.yaml in {output_dir}")
    if is_adapter:
        lines.append(
            f"merge for serving: python -m evoxtral.model.merge {output_dir} --output-dir {output_dir}-merged"
        )
    logger.info("\n".join(lines))


def format_selection_summary(summary: dict[str, Any]) -> str:
    """One line on a RAFT round's selection: clips kept, the best-of-k reward distribution, the threshold."""
    if not summary["inputs"]:
        return "no clips scored"
    quantiles = ", ".join(
        f"p{round(100 * q)} {summary[f'best_reward_p{round(100 * q)}']:.3f}" for q in REWARD_QUANTILES
    )
    fallbacks = f" ({summary['reference_fallbacks']} on their reference)" if summary["reference_fallbacks"] else ""
    return (
        f"{summary['inputs']} clips -> {summary['kept']} kept{fallbacks}; best-of-k reward mean "
        f"{summary['best_reward_mean']:.3f} ({quantiles}; min {summary['best_reward_min']:.3f}, max "
        f"{summary['best_reward_max']:.3f}), threshold {summary['threshold']:.3f}"
    )


def log_raft_summary(
    output_dir: str, *, dataset: str, split: str, summaries: list[dict], scored_dir: str, samples_dir: str
) -> None:
    """Every round's selection and training loss, and where the final and per-round files are (``scored_dir``,
    ``samples_dir``: the names of a round's sample shards and samples dataset)."""
    lines = [f"\nRAFT, {len(summaries)} round(s) on {dataset} ({split}):"]
    for summary in summaries:
        loss = (summary.get("train_metrics") or {}).get("train_loss")
        lines.append(
            f"  round {summary['round']}: {format_selection_summary(summary)}"
            + (f"; train loss {loss:.4f}" if loss is not None else "")
        )
    lines.append(
        f"Final model + model card (README.md) + recipe.yaml: {output_dir}/\n"
        f"Per round: {output_dir}/round_<r>/ (its model, {scored_dir}/*.jsonl with every sample and reward, "
        f"{samples_dir}/ the same as a dataset with the selection)"
    )
    logger.info("\n".join(lines))


def log_fer_summary(output_dir: str, *, train_images: int, steps: int, report: dict, plot_path: Path) -> None:
    """The checkpoint folder, the training size and the test-split scores."""
    logger.info(
        f"FER model saved to {output_dir} ({train_images} train images, {steps} steps).\n"
        f"Test split ({report['test_samples']} images): accuracy {report['test_accuracy']:.3f}, "
        f"macro-F1 {report['test_macro_f1']:.3f}. Confusion matrix: {plot_path}"
    )
