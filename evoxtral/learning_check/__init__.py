"""The learning check: does a model trained with these recipes hear the tags? A controlled experiment run through
the commands a user runs (run.py plans its stages; the runner is evoxtral.utils.stages, the one `make demo` uses),
reported against full-scale targets (report.py)."""
