"""The core package, one folder per stage (scoring, data, model, training, publishing, evaluation, learning_check,
serving, fer) over shared utils and one configs module; README.md "Layout" maps it."""

__version__ = "0.1.0"
