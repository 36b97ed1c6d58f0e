"""Evoxtral-Bench: transcription and expressive-tag metrics for transcripts with inline ElevenLabs v3 audio tags."""

import evaluate

from evoxtral.scoring import hf_evaluate

_DESCRIPTION = """\
Scores tagged transcripts ("[nervous] So... [stammers] I was THINKING") against references: WER/CER of the
tag-free text, tag precision/recall/F1 and hallucination, emphasis (CAPITALS) precision/recall/F1 and a per-tag
table. protocol="evoxtral" reproduces the published Evoxtral-Bench; the default protocol="corpus" pools counts
over the corpus. See the metric card (README.md) for every definition and where the two differ.
"""

_RETURNS = """\
    wer, cer, tag_precision, tag_recall, tag_f1, tag_hallucination_rate, emphasis_precision, emphasis_recall,
    emphasis_f1 (floats, unrounded); corpus only: tag_macro_f1, tag_false_discovery_rate; per_tag
    ({tag: {precision, recall, f1, support}}); num_samples, num_wer_samples, num_predicted_tags,
    num_reference_tags, protocol; with bootstrap, <metric>_ci for every float.
Examples:
    >>> bench = evaluate.load("metrics/evoxtral_bench")
    >>> bench.compute(predictions=["[laughs] hi there"], references=["[laughing] hi there"])["tag_f1"]
    1.0
    >>> bench.compute(predictions=["[laughs] hi there"], references=["[laughing] hi there"], protocol="evoxtral")["tag_f1"]
    0.0
"""


class EvoxtralBench(evaluate.Metric):
    def _info(self):
        return hf_evaluate.metric_info(_DESCRIPTION, _RETURNS)

    def _compute(self, predictions, references, **options):
        return hf_evaluate.compute_selected(None, predictions, references, **options)
