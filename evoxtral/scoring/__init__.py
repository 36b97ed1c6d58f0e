"""Scoring tagged transcripts: the tag vocabulary, the Evoxtral-Bench metric core, RAFT rewards built on it, and
the glue of the `evaluate` modules in metrics/."""
