"""Emphasis F1: how well a transcript's CAPITALISED emphasis words match the reference's (Evoxtral-Bench)."""

import evaluate

from evoxtral.scoring import hf_evaluate

_DESCRIPTION = """\
Precision, recall and F1 of the emphasised words (whole words in capitals, e.g. "I REALLY mean it") of predicted
transcripts against references: the emphasis part of metrics/evoxtral_bench, same options and definitions.
Under protocol="corpus" common acronyms (TV, OK ...) are not emphasis; under "evoxtral" they are.
"""

_RETURNS = """\
    emphasis_f1, emphasis_precision, emphasis_recall (floats); <metric>_ci with bootstrap.
Examples:
    >>> emphasis_f1 = evaluate.load("metrics/emphasis_f1")
    >>> emphasis_f1.compute(predictions=["I REALLY want IT"], references=["I REALLY want it"])["emphasis_f1"]
    0.6666666666666666
"""

KEYS = ("emphasis_f1", "emphasis_precision", "emphasis_recall")


class EmphasisF1(evaluate.Metric):
    def _info(self):
        return hf_evaluate.metric_info(_DESCRIPTION, _RETURNS)

    def _compute(self, predictions, references, **options):
        return hf_evaluate.compute_selected(KEYS, predictions, references, **options)
