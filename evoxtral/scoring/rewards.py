"""RAFT rewards as plain functions looked up by name, and the best-of-k selection rule.

Every reward is ``reward(prediction, reference, *, protocol="evoxtral") -> float`` with higher meaning better,
built on the per-sample scores of :mod:`evoxtral.scoring.evoxtral_bench` (no second copy of any metric). A recipe names them in
its YAML (``reward_funcs: [wer_accuracy, tag_f1, hallucination]``, ``reward_weights: [0.4, 0.4, 0.2]``) and
calls :func:`combined_reward`. The defaults reproduce the original RAFT reward exactly::

    reward = 0.4 * wer_accuracy + 0.4 * tag_f1 + 0.2 * (1 - hallucination)

``protocol="corpus"`` scores the same quantities under the project's text rules instead (canonical tags, so
``[laughing]`` earns ``[laughs]``; normalised WER).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from evoxtral.scoring import tags
from evoxtral.scoring.evoxtral_bench import SampleScores, sample_scores

DEFAULT_REWARD_NAMES = ("wer_accuracy", "tag_f1", "hallucination")
DEFAULT_REWARD_WEIGHTS = (0.4, 0.4, 0.2)
DEFAULT_DROP_FRACTION = 0.1
# The quantiles of a round's best-of-k rewards that its summary and the RAFT model card report.
REWARD_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)

RewardFunc = Callable[..., float]


@lru_cache(maxsize=8192)
def _scores(prediction: str, reference: str, protocol: str) -> SampleScores:
    # The rewards of one combined call share a single scoring pass.
    return sample_scores(prediction, reference, protocol=protocol)


def wer_accuracy_reward(prediction: str, reference: str, *, protocol: str = "evoxtral") -> float:
    """max(0, 1 - WER) of the tag-free text; 1.0 when the reference has no words (nothing to get wrong)."""
    wer = _scores(prediction, reference, protocol).wer
    return 1.0 if wer is None else max(0.0, 1.0 - wer)


def tag_f1_reward(prediction: str, reference: str, *, protocol: str = "evoxtral") -> float:
    """Multiset tag F1 of the sample: 1.0 when neither side has tags, 0.0 when exactly one side has."""
    return _scores(prediction, reference, protocol).tag_f1


def hallucination_reward(prediction: str, reference: str, *, protocol: str = "evoxtral") -> float:
    """1 - the type-level hallucination rate: the share of predicted tags whose type the reference has."""
    return 1.0 - _scores(prediction, reference, protocol).tag_hallucination_rate


def emphasis_f1_reward(prediction: str, reference: str, *, protocol: str = "evoxtral") -> float:
    """Multiset F1 of the emphasised (capitalised) words."""
    return _scores(prediction, reference, protocol).emphasis_f1


def format_reward(prediction: str, reference: str | None = None, *, protocol: str = "evoxtral") -> float:
    """Well-formed output: known tags / (all tags + bracket errors), 1.0 for text with neither.

    Unknown tags (not in the vocabulary, aliases and compounds resolved) and broken brackets (unclosed,
    unopened, nested, empty) each cost one share; the reference and protocol are not needed.
    """
    spans = tags.extract_tags(prediction)
    problems = len(spans) + len(tags.bracket_errors(prediction))
    if problems == 0:
        return 1.0
    return sum(span.known for span in spans) / problems


REWARD_FUNCS: dict[str, RewardFunc] = {
    "wer_accuracy": wer_accuracy_reward,
    "tag_f1": tag_f1_reward,
    "hallucination": hallucination_reward,
    "emphasis_f1": emphasis_f1_reward,
    "format": format_reward,
}


def get_reward_funcs(names: Sequence[str]) -> list[RewardFunc]:
    unknown = [name for name in names if name not in REWARD_FUNCS]
    if unknown:
        raise ValueError(f"unknown reward(s) {unknown}; available: {sorted(REWARD_FUNCS)}")
    return [REWARD_FUNCS[name] for name in names]


def reward_components(
    prediction: str, reference: str, names: Sequence[str] = DEFAULT_REWARD_NAMES, *, protocol: str = "evoxtral"
) -> dict[str, float]:
    """Each named reward of one sample, for logging and for the dataset of scored samples."""
    return {name: func(prediction, reference, protocol=protocol) for name, func in zip(names, get_reward_funcs(names))}


def combined_reward(
    prediction: str,
    reference: str,
    names: Sequence[str] = DEFAULT_REWARD_NAMES,
    weights: Sequence[float] = DEFAULT_REWARD_WEIGHTS,
    *,
    protocol: str = "evoxtral",
) -> float:
    """The weighted sum of the named rewards (weights are used as given, not renormalised)."""
    if len(names) != len(weights):
        raise ValueError(f"{len(names)} reward names but {len(weights)} weights")
    components = reward_components(prediction, reference, names, protocol=protocol)
    return sum(weight * components[name] for name, weight in zip(names, weights))


@dataclass(frozen=True)
class BestOfKSelection:
    best_index: list[int]  # per input: which of its samples scored highest (the first one on ties)
    best_reward: list[float]
    threshold: float | None  # None when there were no inputs
    kept: list[int]  # inputs whose best reward is strictly above the threshold, in input order


def select_best_of_k(
    rewards_per_input: Sequence[Sequence[float]], drop_fraction: float = DEFAULT_DROP_FRACTION
) -> BestOfKSelection:
    """The original RAFT selection: best sample per input, then drop the bottom of the kept rewards.

    threshold = the ascending best rewards at index floor(n * drop_fraction); only inputs strictly above it are
    kept, so ties at the threshold are dropped too (808 inputs with distinct rewards keep 727).
    """
    if not 0 <= drop_fraction < 1:
        raise ValueError(f"drop_fraction must be in [0, 1), got {drop_fraction}")
    best_index, best_reward = [], []
    for input_index, rewards in enumerate(rewards_per_input):
        rewards = [float(reward) for reward in rewards]
        if not rewards or any(math.isnan(reward) for reward in rewards):
            raise ValueError(f"input {input_index} needs at least one reward and no NaN, got {rewards}")
        best = max(range(len(rewards)), key=rewards.__getitem__)
        best_index.append(best)
        best_reward.append(rewards[best])
    if not best_reward:
        return BestOfKSelection([], [], None, [])
    threshold = sorted(best_reward)[math.floor(len(best_reward) * drop_fraction)]
    kept = [index for index, reward in enumerate(best_reward) if reward > threshold]
    return BestOfKSelection(best_index, best_reward, threshold, kept)
