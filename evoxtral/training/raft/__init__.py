"""RAFT (reward-ranked fine-tuning): sample k transcripts per training clip, keep the best, fine-tune on it.

``recipes/raft.py`` parses arguments and calls ``rounds.run_raft``. The kill-safe store of scored samples is
sample_store.py, the choice of targets selection.py, the rounds and the release of the last one rounds.py.
"""
