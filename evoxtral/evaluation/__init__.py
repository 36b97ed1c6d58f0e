"""Evaluation runs: decode a dataset split with one or more models, score with Evoxtral-Bench, report like a paper.

``recipes/eval.py`` parses arguments and calls :func:`run_evaluation`. A run writes, under its output folder:

* ``predictions/<label>.jsonl``: one line per clip (reference, prediction, which clip's audio was decoded), written
  batch by batch, so a killed run resumes where it stopped;
* ``metrics.json``: every model's metrics under every protocol;
* ``report.md``: Table 2 (core metrics, models side by side, one table per protocol) and Table 3 (per-tag F1 with
  support), plus the own-audio / other-audio comparison when the control ran;
* ``per_tag_f1.png``: per-tag F1 bars for every model.

The mismatched-audio control decodes every clip with another clip's audio (a seeded derangement) and scores it
against the clip's own reference: a model that listens should fall to chance there, one that guesses tags from
priors will not.

Modules: decoding.py (model specs, the control's audio order, resumable decoding), report.py (the tables),
plots.py (the per-tag chart), run.py (a whole run).
"""
