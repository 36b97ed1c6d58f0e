"""Data: audio decoding, the one place a dataset split is loaded and prepared for any stage (splits.py), and the
generator of tagged expressive speech (generation/, see data_gen/README.md)."""
