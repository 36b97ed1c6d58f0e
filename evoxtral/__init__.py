"""Core package shared by every stage: tag vocabulary, metric core, model loading, collator, inference."""

__version__ = "0.1.0"
