"""Data generation: tagged scripts -> expressive speech -> a `datasets` dataset (see data_gen/README.md)."""
