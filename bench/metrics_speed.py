"""How fast the metric core scores a corpus, against the straightforward per-sample loop in the same run.

The baseline is what the published benchmark does: for every pair call jiwer.wer and jiwer.cer, count tags and
emphasis with Counters, then average the per-sample values in Python. It also serves as a cross-check: the
core's protocol="evoxtral" must give the same numbers.

    python bench/metrics_speed.py [--num_pairs 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter

import jiwer

from evoxtral.scoring import tags
from evoxtral.scoring.evoxtral_bench import compute_metrics

WORDS = (
    "so I was thinking maybe we could try that new restaurant downtown if you are free this weekend "
    "honestly it is fine... well, OK the TV was on and REALLY nobody NEVER listens to me anyway"
).split()
TAG_SPELLINGS = [f"[{name}]" for name in tags.ORIGINAL_TAGS] + ["[laughing]", "[laughs nervously]", "[sighing]"]


def synthetic_pairs(num_pairs: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Reference transcripts with ~15% tags, and predictions that drop, swap and add words and tags."""
    rng = random.Random(seed)
    predictions, references = [], []
    for _ in range(num_pairs):
        reference, prediction = [], []
        for _ in range(rng.randint(5, 30)):
            if rng.random() < 0.15:
                tag = rng.choice(TAG_SPELLINGS)
                reference.append(tag)
                if rng.random() < 0.7:
                    prediction.append(tag if rng.random() < 0.8 else rng.choice(TAG_SPELLINGS))
            word = rng.choice(WORDS)
            reference.append(word)
            roll = rng.random()
            if roll < 0.9:
                prediction.append(word)
            elif roll < 0.95:
                prediction.append(rng.choice(WORDS))
            if rng.random() < 0.02:
                prediction.append(rng.choice(TAG_SPELLINGS))
        predictions.append(" ".join(prediction))
        references.append(" ".join(reference))
    return predictions, references


def _ratio(numerator, denominator, empty_value):
    return numerator / denominator if denominator else empty_value


def per_sample_loop(predictions: list[str], references: list[str]) -> dict[str, float]:
    """The published protocol written the straightforward way, one pair at a time."""
    wers, cers, precisions, recalls, f1s, hallucinations, emphasis_f1s = [], [], [], [], [], [], []
    for prediction, reference in zip(predictions, references):
        stripped_reference, stripped_prediction = tags.original_strip(reference), tags.original_strip(prediction)
        if stripped_reference.strip():
            wers.append(jiwer.wer(stripped_reference, stripped_prediction))
            cers.append(jiwer.cer(stripped_reference, stripped_prediction))
        predicted, expected = Counter(tags.original_tags(prediction)), Counter(tags.original_tags(reference))
        tp = sum((predicted & expected).values())
        precision = _ratio(tp, sum(predicted.values()), 1.0 if not expected else 0.0)
        recall = _ratio(tp, sum(expected.values()), 1.0 if not predicted else 0.0)
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(_ratio(2 * precision * recall, precision + recall, 0.0))
        invented = sum(count for name, count in predicted.items() if name not in expected)
        hallucinations.append(_ratio(invented, sum(predicted.values()), 0.0))
        emphasized, expected_emphasis = tags.original_emphasis(prediction), tags.original_emphasis(reference)
        if not emphasized or not expected_emphasis:
            emphasis_f1s.append(float(not emphasized and not expected_emphasis))
        else:
            common = sum((Counter(emphasized) & Counter(expected_emphasis)).values())
            p, r = common / len(emphasized), common / len(expected_emphasis)
            emphasis_f1s.append(_ratio(2 * p * r, p + r, 0.0))
    mean = lambda values: sum(values) / len(values) if values else 0.0  # noqa: E731
    return {
        "wer": mean(wers),
        "cer": mean(cers),
        "tag_precision": mean(precisions),
        "tag_recall": mean(recalls),
        "tag_f1": mean(f1s),
        "tag_hallucination_rate": mean(hallucinations),
        "emphasis_f1": mean(emphasis_f1s),
    }


def timed(function, repeats: int):
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_pairs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the median is reported")
    args = parser.parse_args()

    predictions, references = synthetic_pairs(args.num_pairs)
    rows = [
        ("per-sample loop, jiwer per pair (baseline, evoxtral protocol)", lambda: per_sample_loop(predictions, references)),
        ("compute_metrics protocol=evoxtral", lambda: compute_metrics(predictions, references, protocol="evoxtral")),
        ("compute_metrics protocol=corpus", lambda: compute_metrics(predictions, references)),
        ("compute_metrics protocol=corpus collar=2", lambda: compute_metrics(predictions, references, collar=2)),
        ("compute_metrics protocol=corpus bootstrap=1000", lambda: compute_metrics(predictions, references, bootstrap=1000)),
    ]  # fmt: skip
    results = []
    for name, function in rows:
        seconds, result = timed(function, args.repeats)
        results.append((name, seconds, result))
    baseline_seconds, baseline = results[0][1], results[0][2]
    core = results[1][2]
    disagreement = max(abs(core[key] - value) for key, value in baseline.items())

    print(f"\n{args.num_pairs:,} pairs, median of {args.repeats} runs, one process\n")
    print("| method | seconds | pairs/s | speed-up vs baseline |")
    print("|---|---:|---:|---:|")
    for name, seconds, _ in results:
        print(f"| {name} | {seconds:.2f} | {args.num_pairs / seconds:,.0f} | {baseline_seconds / seconds:.1f}x |")
    print(f"\nLargest difference between the baseline and protocol=evoxtral over shared metrics: {disagreement:.2e}")
    if disagreement > 1e-9:
        raise SystemExit("the metric core disagrees with the straightforward loop")


if __name__ == "__main__":
    main()
