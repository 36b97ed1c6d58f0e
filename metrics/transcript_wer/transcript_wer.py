"""Transcript WER: word and character error rates of tagged transcripts, with the tags taken out (Evoxtral-Bench)."""

import evaluate

from evoxtral.scoring import hf_evaluate

_DESCRIPTION = """\
WER and CER of predicted transcripts against references after removing inline audio tags: the transcription
part of metrics/evoxtral_bench, same options and definitions. protocol="corpus" pools errors over the corpus on
normalised text (lowercase, no punctuation); protocol="evoxtral" averages per-sample jiwer scores.
"""

_RETURNS = """\
    wer, cer (floats), num_wer_samples (references with words); <metric>_ci with bootstrap.
Examples:
    >>> transcript_wer = evaluate.load("metrics/transcript_wer")
    >>> transcript_wer.compute(predictions=["[sighs] Hello, world"], references=["hello there [laughs]"])["wer"]
    0.5
"""

KEYS = ("wer", "cer", "num_wer_samples")


class TranscriptWer(evaluate.Metric):
    def _info(self):
        return hf_evaluate.metric_info(_DESCRIPTION, _RETURNS)

    def _compute(self, predictions, references, **options):
        return hf_evaluate.compute_selected(KEYS, predictions, references, **options)
