"""Tag F1: how well a transcript's inline audio tags match the reference's (Evoxtral-Bench)."""

import evaluate

from evoxtral.scoring import hf_evaluate

_DESCRIPTION = """\
Precision, recall and F1 of the inline audio tags ([laughs], [sighs] ...) of predicted transcripts against
references: the tag part of metrics/evoxtral_bench, same options and definitions.
"""

_RETURNS = """\
    tag_f1, tag_precision, tag_recall (floats); tag_macro_f1 under protocol="corpus"; <metric>_ci with bootstrap.
Examples:
    >>> tag_f1 = evaluate.load("metrics/tag_f1")
    >>> tag_f1.compute(predictions=["[sighs] fine", "ok"], references=["[sighs] fine", "[laughs] ok"])["tag_f1"]
    0.6666666666666666
"""

KEYS = ("tag_f1", "tag_precision", "tag_recall", "tag_macro_f1")


class TagF1(evaluate.Metric):
    def _info(self):
        return hf_evaluate.metric_info(_DESCRIPTION, _RETURNS)

    def _compute(self, predictions, references, **options):
        return hf_evaluate.compute_selected(KEYS, predictions, references, **options)
