"""What the `evaluate` modules in metrics/ share: their info and how they call the metric core.

The module files stay a few lines each (evaluate copies them into its cache, so they import this package rather
than anything relative to their folder).
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate

from evoxtral.scoring.evoxtral_bench import compute_metrics

CITATION = """\
@misc{evoxtral_bench,
  title  = {Evoxtral-Bench: expressive tagged transcription with ElevenLabs v3 audio tags},
  author = {Zou, Yongkang},
  year   = {2026},
  note   = {Mistral AI Online Hackathon 2026. Re-implemented with a corrected default protocol.}
}
"""

OPTIONS_DESCRIPTION = """
Args:
    predictions (list of str): model transcripts with inline [tags] and CAPITALISED emphasis.
    references (list of str): reference transcripts in the same format.
    protocol (str): "corpus" (default: pooled counts, canonical tag names, normalised WER) or "evoxtral"
        (the published protocol, per-sample averages, quirks included).
    collar (int, optional): corpus only. A predicted tag counts only when the same tag stands within this many
        words of the reference tag (positions after aligning the tag-free words). Default: positions ignored.
    normalize (bool): corpus only. WER/CER on lowercased text without punctuation (default True) or on the
        tag-free text as written.
    min_support (int): corpus only. Reference occurrences a tag needs to enter tag_macro_f1 (default 3).
    bootstrap (int): resamples for 95% intervals, returned as `<metric>_ci` = [low, high] (default 0: none).
    seed (int): seed of the resampling (default 0).
Returns:
{returns}
"""


def metric_info(description: str, returns: str) -> evaluate.MetricInfo:
    return evaluate.MetricInfo(
        description=description,
        citation=CITATION,
        inputs_description=OPTIONS_DESCRIPTION.format(returns=returns),
        features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        reference_urls=["https://elevenlabs.io/docs/best-practices/prompting/eleven-v3"],
    )


def compute_selected(keys: Sequence[str] | None, predictions, references, **options) -> dict:
    """compute_metrics, restricted to ``keys`` and their intervals (None: everything)."""
    result = compute_metrics(predictions, references, **options)
    if keys is None:
        return result
    wanted = set(keys) | {f"{key}_ci" for key in keys}
    return {key: value for key, value in result.items() if key in wanted}
