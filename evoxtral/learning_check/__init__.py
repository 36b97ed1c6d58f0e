"""The learning check: does a model trained with these recipes hear the tags? (the logic of recipes/learning_check.py)

A controlled experiment, run stage by stage through the same entry points a user runs:

1. ``data``: ``data_gen/generate.py`` on a learning-check config (random words drawn independently of the tags,
   every tag rendered only in the sound);
2. ``model``: ``python -m evoxtral.model.tiny`` writes a Voxtral-architecture checkpoint folder of the chosen size;
3. ``sft``: ``accelerate launch recipes/sft.py`` trains it from random weights (full fine-tuning);
4. ``raft``: ``accelerate launch recipes/raft.py``, one round continuing the SFT model;
5. ``eval``: ``recipes/eval.py`` on the held-out split for both models, with the mismatched-audio control.

Then ``results.md``, ``results.json`` and ``learning_check.png``: per-tag F1 with the clip's own audio and with
another clip's audio, WER, SFT next to RAFT, and pass/fail against the targets. A stage whose outputs exist is
skipped, so a killed run resumes (SFT, RAFT and eval also resume inside a stage); a stage whose input was rebuilt
in this run is rebuilt too, so no result mixes old and new models.

report.py turns the eval recipe's metrics into the results; run.py plans the stages and runs them through
evoxtral.utils.stages, the runner `make demo` uses too.
"""
