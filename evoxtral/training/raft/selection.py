"""What a RAFT round trains on: the best of k samples per clip, the original drop rule, and optionally the reference
where the best sample falls short of it; saved with every sample as a ``datasets`` folder to inspect a run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from evoxtral.scoring.rewards import DEFAULT_DROP_FRACTION, REWARD_QUANTILES, select_best_of_k

SAMPLES_DATASET_DIR = "samples"


@dataclass(frozen=True)
class RoundSelection:
    """What one round trains on, decided from its scored rows (in input order)."""

    rows: list[dict]
    best_index: list[int]
    best_reward: list[float]
    threshold: float | None
    target_source: list[str]  # per row: "sample" (its best sample), "reference" (fallback) or "dropped"

    @property
    def training_rows(self) -> list[int]:
        return [index for index, source in enumerate(self.target_source) if source != "dropped"]

    def target(self, index: int) -> str:
        row = self.rows[index]
        return row["reference"] if self.target_source[index] == "reference" else row["samples"][self.best_index[index]]

    def summary(self) -> dict[str, Any]:
        """Reward distribution of the best samples, threshold and counts (for the model card and the log)."""
        rewards = np.asarray(self.best_reward, dtype=float)
        counts = {source: self.target_source.count(source) for source in ("sample", "reference", "dropped")}
        summary: dict[str, Any] = {
            "inputs": len(self.rows),
            "kept": len(self.training_rows),
            "kept_samples": counts["sample"],
            "reference_fallbacks": counts["reference"],
            "dropped": counts["dropped"],
            "threshold": self.threshold,
        }
        if len(rewards):
            summary["best_reward_mean"] = float(rewards.mean())
            summary["best_reward_min"] = float(rewards.min())
            summary["best_reward_max"] = float(rewards.max())
            for quantile in REWARD_QUANTILES:
                summary[f"best_reward_p{round(100 * quantile)}"] = float(np.quantile(rewards, quantile))
            all_rewards = np.concatenate([np.asarray(row["rewards"], dtype=float) for row in self.rows])
            summary["sample_reward_mean"] = float(all_rewards.mean())
        return summary


def select_training_targets(
    rows: Sequence[dict],
    drop_fraction: float = DEFAULT_DROP_FRACTION,
    *,
    reference_fallback: bool = False,
    reference_fallback_margin: float = 0.0,
) -> RoundSelection:
    """Best of k per clip and the original drop rule; with ``reference_fallback``, references replace weak samples.

    A clip whose best sample scores below ``reference_reward - reference_fallback_margin`` (the reference scored
    against itself under the same rewards: 1.0 with the default rewards, less when e.g. the format reward finds an
    unknown tag in the reference) trains on its reference instead, whether or not the threshold would have dropped
    it. The threshold is always computed from the best samples, as in the original, and still drops the clips that
    keep their sample.
    """
    rows = list(rows)
    selection = select_best_of_k([row["rewards"] for row in rows], drop_fraction)
    kept = set(selection.kept)
    sources = []
    for index, row in enumerate(rows):
        if reference_fallback and selection.best_reward[index] < row["reference_reward"] - reference_fallback_margin:
            sources.append("reference")
        else:
            sources.append("sample" if index in kept else "dropped")
    return RoundSelection(rows, selection.best_index, selection.best_reward, selection.threshold, sources)


def save_samples_dataset(selection: RoundSelection, path: Path) -> Path:
    """Every clip's k samples, their rewards (combined and per reward) and the round's decision, as a dataset."""
    rows = selection.rows
    columns: dict[str, list] = {
        "id": [row["id"] for row in rows],
        "reference": [row["reference"] for row in rows],
        "samples": [row["samples"] for row in rows],
        "rewards": [row["rewards"] for row in rows],
        "reference_reward": [row["reference_reward"] for row in rows],
        "best_index": selection.best_index,
        "best_reward": selection.best_reward,
        "target_source": selection.target_source,
        "target": [
            None if source == "dropped" else selection.target(i) for i, source in enumerate(selection.target_source)
        ],
    }
    for name in rows[0]["components"] if rows else ():
        columns[f"reward_{name}"] = [row["components"][name] for row in rows]
    dataset = datasets.Dataset.from_dict(columns)
    dataset.save_to_disk(str(path))
    return path


def training_split(data, selection: RoundSelection, positions: Sequence[int], text_column: str):
    """The kept clips with their target (best sample or reference fallback) in place of the reference."""
    kept = selection.training_rows
    rows = data.select([positions[index] for index in kept]).remove_columns(text_column)
    return rows.add_column(text_column, [selection.target(index) for index in kept])
