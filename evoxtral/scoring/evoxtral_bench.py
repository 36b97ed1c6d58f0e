"""Evoxtral-Bench: the one metric core behind eval, RAFT rewards, training callbacks, the server and `evaluate`.

Two protocols share one counting pass and one aggregation:

* ``protocol="evoxtral"`` reproduces the published benchmark exactly, quirks included: raw ``[...]`` extraction
  (no alias merging), the CAPS emphasis rule (acronyms count), per-sample values averaged over samples (a clip with
  no tags on either side scores 1.0), WER/CER skipped for blank references, a pooled per-tag table. The original
  reports only emphasis F1; emphasis precision and recall are added here with the same per-sample edge rules.
* ``protocol="corpus"`` (the default) pools counts over the corpus (micro averages), names tags through
  :mod:`evoxtral.scoring.tags` (aliases and compound tags merged), can require a predicted tag to stand near the
  reference tag (``collar``), reports macro-F1 over tags with enough support, and pools WER/CER over the corpus
  on normalised text (:func:`normalize_transcript`).

Every ratio uses one convention (:func:`precision_recall_f1`): a 0/0 precision or recall is 1.0 when both sides
are empty and 0.0 otherwise. That is the original per-sample rule, applied to pooled counts as well.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from jiwer.transformations import cer_default, wer_default
from rapidfuzz.distance import Levenshtein

from evoxtral.scoring import tags

PROTOCOLS = ("corpus", "evoxtral")
DEFAULT_MIN_SUPPORT = 3
CONFIDENCE_LEVEL = 0.95
_BOOTSTRAP_CHUNK = 128  # replicates resampled at once: bounds memory to chunk x samples weights

_APOSTROPHES = re.compile(r"['’]")
_NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]|_")


def normalize_transcript(text: str) -> str:
    """The text that corpus-protocol WER and CER compare.

    Tags removed; lowercased (which also lowers emphasis capitals); apostrophes dropped so "don't" and "dont"
    agree; every other character that is not a letter, digit or whitespace becomes a space (punctuation, ellipses,
    dashes, symbols); whitespace collapsed and trimmed.
    """
    return _normalize_tag_free(tags.strip_tags(text))


def _normalize_tag_free(text: str) -> str:
    lowered = _APOSTROPHES.sub("", text.lower())
    return " ".join(_NOT_WORD_OR_SPACE.sub(" ", lowered).split())


def precision_recall_f1(tp, fp, fn):
    """Precision, recall and F1 from counts (scalars or numpy arrays), with the benchmark's 0/0 convention.

    precision = tp/(tp+fp), or 1.0 when nothing was predicted and nothing was expected, else 0.0;
    recall = tp/(tp+fn), or 1.0 when nothing was expected and nothing was predicted, else 0.0;
    f1 = 2pr/(p+r), or 0.0 when p+r = 0. So both sides empty gives 1/1/1 and exactly one side empty gives 0/0/0.
    """
    tp, fp, fn = (np.asarray(x, dtype=float) for x in (tp, fp, fn))
    predicted, expected = tp + fp, tp + fn
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), (expected == 0).astype(float))
    recall = np.where(expected > 0, tp / np.maximum(expected, 1), (predicted == 0).astype(float))
    total = precision + recall
    f1 = np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)
    return precision, recall, f1


def multiset_overlap(predicted: Counter, expected: Counter) -> int:
    """Size of the multiset intersection: per item the smaller of the two counts, summed."""
    return sum((predicted & expected).values())


# --- Counting pass -----------------------------------------------------------------------------------------------

_COLUMNS = (
    "word_errors",  # Levenshtein distance between the word sequences
    "reference_words",
    "char_errors",
    "reference_chars",
    "tag_tp",
    "tag_fp",
    "tag_fn",
    "tag_hallucinated",  # predicted tags whose type does not occur in the sample's reference
    "emphasis_tp",
    "emphasis_fp",
    "emphasis_fn",
)


@dataclass
class _Counts:
    """Per-sample counts, one numpy column each, plus the per-tag counts of every sample."""

    columns: dict[str, np.ndarray]
    per_tag: list[tuple[int, str, int, int, int]]  # (sample index, tag, tp, fp, fn)

    @property
    def num_samples(self) -> int:
        return len(self.columns["tag_tp"])


def _words_and_chars(texts: list[str], protocol: str, normalize: bool) -> tuple[list[list[str]], list]:
    """What WER and CER compare, per text: its word list and its character sequence."""
    if not texts:
        return [], []
    if protocol == "evoxtral":
        stripped = [tags.original_strip(text) for text in texts]
        # jiwer's own default transforms, so the tokenisation is exactly that of jiwer.wer / jiwer.cer
        return wer_default(stripped), cer_default(stripped)
    cleaned = [normalize_transcript(text) if normalize else tags.strip_tags(text) for text in texts]
    return [text.split() for text in cleaned], cleaned


def _alignment_words(text: str, normalize: bool) -> list[str]:
    """The tag-free words ``extract_tags`` counts positions in, each normalised but never split or dropped."""
    words = tags.strip_tags(text).split()
    if not normalize:
        return words
    # most words are already plain lowercase: only the others go through the regular expressions
    return [word if word.isalpha() and word.islower() else (_normalize_tag_free(word) or word) for word in words]


def _reference_gaps(reference_words: list[str], predicted_words: list[str]) -> tuple[list[int], list[int]]:
    """For each gap of the prediction (before word j, j = 0..len), the span of reference gaps it aligns to.

    The words are aligned with the Levenshtein alignment jiwer reports (rapidfuzz opcodes). A predicted word that
    matches or substitutes reference word i sits between reference gaps i and i+1; an inserted word sits on the
    gap where it was inserted. A gap between two predicted words therefore spans the reference gaps between their
    anchors, which covers any reference words deleted there.
    """
    before = [0] * len(predicted_words)
    after = [0] * len(predicted_words)
    for op in Levenshtein.opcodes(reference_words, predicted_words):
        for offset in range(op.dest_end - op.dest_start):
            word = op.dest_start + offset
            if op.tag == "insert":
                before[word] = after[word] = op.src_start
            else:  # equal or replace: blocks of equal length on both sides
                before[word] = op.src_start + offset
                after[word] = before[word] + 1
    return [0, *after], [*before, len(reference_words)]


def _matches_within_collar(predicted: list[tuple[int, int]], expected: list[int], collar: int) -> int:
    """Largest one-to-one matching of predicted gap spans to reference positions at most ``collar`` words apart.

    Both lists are in text order, so spans and positions are monotone and the greedy sweep is optimal.
    """
    matched = cursor = 0
    for low, high in predicted:
        while cursor < len(expected) and expected[cursor] < low - collar:
            cursor += 1
        if cursor < len(expected) and expected[cursor] <= high + collar:
            matched += 1
            cursor += 1
    return matched


def _tag_matches(
    prediction: str, reference: str, collar: int | None, normalize: bool
) -> tuple[Counter, Counter, Counter]:
    """Canonical tag counts of both sides and, per tag, how many predicted tags match a reference tag."""
    predicted_spans = tags.extract_tags(prediction)
    reference_spans = tags.extract_tags(reference)
    predicted = Counter(span.name for span in predicted_spans)
    expected = Counter(span.name for span in reference_spans)
    if collar is None:
        return predicted, expected, predicted & expected
    low, high = _reference_gaps(_alignment_words(reference, normalize), _alignment_words(prediction, normalize))
    positions_by_tag = defaultdict(list)
    for span in reference_spans:
        positions_by_tag[span.name].append(span.word_index)
    spans_by_tag = defaultdict(list)
    for span in predicted_spans:
        spans_by_tag[span.name].append((low[span.word_index], high[span.word_index]))
    matched = Counter()
    for name, spans in spans_by_tag.items():
        if name in positions_by_tag:
            matched[name] = _matches_within_collar(spans, positions_by_tag[name], collar)
    return predicted, expected, +matched


def _count(
    predictions: list[str], references: list[str], protocol: str, collar: int | None, normalize: bool
) -> _Counts:
    predicted_words, predicted_chars = _words_and_chars(predictions, protocol, normalize)
    reference_words, reference_chars = _words_and_chars(references, protocol, normalize)
    rows = []
    per_tag = []
    for index, (prediction, reference) in enumerate(zip(predictions, references)):
        if protocol == "evoxtral":
            predicted_tags = Counter(tags.original_tags(prediction))
            expected_tags = Counter(tags.original_tags(reference))
            matched = predicted_tags & expected_tags
            predicted_emphasis = Counter(tags.original_emphasis(prediction))
            expected_emphasis = Counter(tags.original_emphasis(reference))
        else:
            predicted_tags, expected_tags, matched = _tag_matches(prediction, reference, collar, normalize)
            predicted_emphasis = Counter(tags.emphasis_words(prediction))
            expected_emphasis = Counter(tags.emphasis_words(reference))
        for name in predicted_tags.keys() | expected_tags.keys():
            tp = matched[name]
            per_tag.append((index, name, tp, predicted_tags[name] - tp, expected_tags[name] - tp))
        tag_tp = sum(matched.values())
        emphasis_tp = multiset_overlap(predicted_emphasis, expected_emphasis)
        rows.append(
            (
                Levenshtein.distance(reference_words[index], predicted_words[index]),
                len(reference_words[index]),
                Levenshtein.distance(reference_chars[index], predicted_chars[index]),
                len(reference_chars[index]),
                tag_tp,
                predicted_tags.total() - tag_tp,
                expected_tags.total() - tag_tp,
                sum(count for name, count in predicted_tags.items() if name not in expected_tags),
                emphasis_tp,
                predicted_emphasis.total() - emphasis_tp,
                expected_emphasis.total() - emphasis_tp,
            )
        )
    table = np.asarray(rows, dtype=float).reshape(len(rows), len(_COLUMNS))
    return _Counts({name: table[:, i] for i, name in enumerate(_COLUMNS)}, per_tag)


# --- Per-sample values --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleScores:
    """One prediction scored against its reference. ``wer``/``cer`` are None when the reference has no words."""

    wer: float | None
    cer: float | None
    tag_precision: float
    tag_recall: float
    tag_f1: float
    tag_hallucination_rate: float
    emphasis_precision: float
    emphasis_recall: float
    emphasis_f1: float

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


def _per_sample_values(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The original's per-sample values as arrays; WER/CER are NaN where the reference has no words."""
    has_words = columns["reference_words"] > 0
    tag_precision, tag_recall, tag_f1 = precision_recall_f1(columns["tag_tp"], columns["tag_fp"], columns["tag_fn"])
    emphasis_precision, emphasis_recall, emphasis_f1 = precision_recall_f1(
        columns["emphasis_tp"], columns["emphasis_fp"], columns["emphasis_fn"]
    )
    predicted_tags = columns["tag_tp"] + columns["tag_fp"]
    return {
        "wer": np.where(has_words, columns["word_errors"] / np.maximum(columns["reference_words"], 1), np.nan),
        "cer": np.where(has_words, columns["char_errors"] / np.maximum(columns["reference_chars"], 1), np.nan),
        "tag_precision": tag_precision,
        "tag_recall": tag_recall,
        "tag_f1": tag_f1,
        "tag_hallucination_rate": columns["tag_hallucinated"] / np.maximum(predicted_tags, 1),
        "emphasis_precision": emphasis_precision,
        "emphasis_recall": emphasis_recall,
        "emphasis_f1": emphasis_f1,
    }


def _check_inputs(predictions, references, protocol: str, collar: int | None) -> tuple[list[str], list[str]]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if collar is not None:
        if protocol == "evoxtral":
            raise ValueError("collar applies to protocol='corpus' only: the published protocol ignores positions")
        if isinstance(collar, bool) or not isinstance(collar, int) or collar < 0:
            raise ValueError(f"collar must be a non-negative number of words, got {collar!r}")
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    for name, texts in (("prediction", predictions), ("reference", references)):
        for index, text in enumerate(texts):
            if text is None:
                texts[index] = ""
            elif not isinstance(text, str):
                raise TypeError(f"{name} {index} is a {type(text).__name__}, expected a string")
    return predictions, references


def score_samples(
    predictions, references, *, protocol: str = "corpus", collar: int | None = None, normalize: bool = True
) -> list[SampleScores]:
    """Per-sample scores under a protocol's text rules (what rewards and per-clip reports use)."""
    predictions, references = _check_inputs(predictions, references, protocol, collar)
    values = _per_sample_values(_count(predictions, references, protocol, collar, normalize).columns)
    return [
        SampleScores(**{key: (None if np.isnan(array[i]) else float(array[i])) for key, array in values.items()})
        for i in range(len(predictions))
    ]


def sample_scores(prediction: str, reference: str, **options) -> SampleScores:
    """One prediction against one reference; options as in :func:`score_samples`."""
    return score_samples([prediction], [reference], **options)[0]


# --- Aggregation (shared by the point estimate and every bootstrap replicate) ---------------------------------------


def _per_tag_matrices(counts: _Counts) -> tuple[list[str], dict[str, np.ndarray]]:
    names = sorted({name for _, name, *_ in counts.per_tag})
    column = {name: i for i, name in enumerate(names)}
    matrices = {key: np.zeros((counts.num_samples, len(names))) for key in ("tp", "fp", "fn")}
    for sample, name, tp, fp, fn in counts.per_tag:
        matrices["tp"][sample, column[name]] += tp
        matrices["fp"][sample, column[name]] += fp
        matrices["fn"][sample, column[name]] += fn
    return names, matrices


def _macro_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, min_support: int) -> np.ndarray:
    """Mean per-tag F1 over tags whose reference count reaches min_support (rows: replicates); NaN if none does."""
    _, _, f1 = precision_recall_f1(tp, fp, fn)
    eligible = (tp + fn) >= min_support
    count = eligible.sum(axis=-1)
    return np.where(count > 0, (f1 * eligible).sum(axis=-1) / np.maximum(count, 1), np.nan)


def _aggregate(
    counts: _Counts, weights: np.ndarray, protocol: str, min_support: int, tag_matrices=None
) -> dict[str, np.ndarray]:
    """Scalar metrics for each row of ``weights`` (replicates x samples: how often each sample is drawn)."""
    columns = counts.columns
    if protocol == "evoxtral":
        values = _per_sample_values(columns)
        has_words = ~np.isnan(values["wer"])
        samples = weights.sum(axis=1)
        scored = weights @ has_words.astype(float)
        result = {}
        for key, array in values.items():
            if key in ("wer", "cer"):
                result[key] = np.where(
                    scored > 0, weights @ np.where(has_words, array, 0.0) / np.maximum(scored, 1), 0.0
                )
            else:
                result[key] = np.where(samples > 0, weights @ array / np.maximum(samples, 1), 0.0)
        return result

    pooled = {key: weights @ column for key, column in columns.items()}
    predicted_tags = pooled["tag_tp"] + pooled["tag_fp"]
    tag_precision, tag_recall, tag_f1 = precision_recall_f1(pooled["tag_tp"], pooled["tag_fp"], pooled["tag_fn"])
    emphasis_precision, emphasis_recall, emphasis_f1 = precision_recall_f1(
        pooled["emphasis_tp"], pooled["emphasis_fp"], pooled["emphasis_fn"]
    )
    if tag_matrices is None:
        tag_matrices = _per_tag_matrices(counts)[1]
    return {
        # as jiwer on lists: errors over reference words, the bare error count if the corpus has no words
        "wer": pooled["word_errors"] / np.maximum(pooled["reference_words"], 1),
        "cer": pooled["char_errors"] / np.maximum(pooled["reference_chars"], 1),
        "tag_precision": tag_precision,
        "tag_recall": tag_recall,
        "tag_f1": tag_f1,
        "tag_macro_f1": _macro_f1(*(weights @ tag_matrices[key] for key in ("tp", "fp", "fn")), min_support),
        "tag_hallucination_rate": pooled["tag_hallucinated"] / np.maximum(predicted_tags, 1),
        "tag_false_discovery_rate": pooled["tag_fp"] / np.maximum(predicted_tags, 1),
        "emphasis_precision": emphasis_precision,
        "emphasis_recall": emphasis_recall,
        "emphasis_f1": emphasis_f1,
    }


def _per_tag_table(counts: _Counts) -> dict[str, dict[str, float]]:
    """Counts pooled per tag over the whole set; support = reference occurrences (tp + fn)."""
    pooled = defaultdict(lambda: [0, 0, 0])
    for _, name, tp, fp, fn in counts.per_tag:
        pooled[name][0] += tp
        pooled[name][1] += fp
        pooled[name][2] += fn
    table = {}
    for name, (tp, fp, fn) in sorted(pooled.items(), key=lambda item: (-(item[1][0] + item[1][2]), item[0])):
        precision, recall, f1 = precision_recall_f1(tp, fp, fn)
        table[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": tp + fn}
    return table


def _bootstrap_intervals(
    counts: _Counts, protocol: str, min_support: int, replicates: int, seed: int
) -> dict[str, list[float | None]]:
    """Percentile intervals from resampling whole samples with replacement, deterministic for a seed."""
    n = counts.num_samples
    if n == 0:
        return {}
    rng = np.random.default_rng(seed)
    tag_matrices = _per_tag_matrices(counts)[1] if protocol == "corpus" else None
    draws = defaultdict(list)
    for start in range(0, replicates, _BOOTSTRAP_CHUNK):
        size = min(_BOOTSTRAP_CHUNK, replicates - start)
        picks = rng.integers(0, n, size=(size, n)) + np.arange(size)[:, None] * n
        weights = np.bincount(picks.ravel(), minlength=size * n).reshape(size, n).astype(float)
        for key, values in _aggregate(counts, weights, protocol, min_support, tag_matrices).items():
            draws[key].append(values)
    tail = (1 - CONFIDENCE_LEVEL) / 2 * 100
    intervals = {}
    for key, chunks in draws.items():
        values = np.concatenate(chunks)
        values = values[~np.isnan(values)]
        bounds = np.percentile(values, [tail, 100 - tail]) if len(values) else [None, None]
        intervals[f"{key}_ci"] = [None if bound is None else float(bound) for bound in bounds]
    return intervals


def compute_metrics(
    predictions,
    references,
    *,
    protocol: str = "corpus",
    collar: int | None = None,
    normalize: bool = True,
    min_support: int = DEFAULT_MIN_SUPPORT,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Evoxtral-Bench over a corpus: a flat dict of unrounded floats (see the metric card for every key).

    Args:
        predictions, references: tagged transcripts, one per clip (None counts as an empty transcript).
        protocol: "corpus" (pooled counts, canonical tags, normalised WER) or "evoxtral" (the published protocol).
        collar: corpus only; a predicted tag counts only when the same tag stands within this many words of the
            reference tag, positions taken after aligning the tag-free words. None ignores positions.
        normalize: corpus only; WER/CER on :func:`normalize_transcript` text, or on the tag-free text as written.
        min_support: reference occurrences a tag needs to enter ``tag_macro_f1`` (corpus only).
        bootstrap: number of resamples for 95% percentile intervals ``<metric>_ci`` (0: none).
        seed: seeds the resampling.
    """
    predictions, references = _check_inputs(predictions, references, protocol, collar)
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
    counts = _count(predictions, references, protocol, collar, normalize)
    point = _aggregate(counts, np.ones((1, counts.num_samples)), protocol, min_support)
    # pooled ratios of an empty corpus are undefined; the published protocol averages an empty list to 0
    undefined = protocol == "corpus" and counts.num_samples == 0
    result: dict[str, Any] = {
        key: (None if undefined or np.isnan(values[0]) else float(values[0])) for key, values in point.items()
    }
    result["per_tag"] = _per_tag_table(counts)
    result["num_samples"] = counts.num_samples
    result["num_wer_samples"] = int((counts.columns["reference_words"] > 0).sum())
    result["num_predicted_tags"] = int(counts.columns["tag_tp"].sum() + counts.columns["tag_fp"].sum())
    result["num_reference_tags"] = int(counts.columns["tag_tp"].sum() + counts.columns["tag_fn"].sum())
    result["protocol"] = protocol
    if bootstrap:
        result.update(_bootstrap_intervals(counts, protocol, min_support, bootstrap, seed))
    return result
