"""Entry point of the transcription API: ``python -m serve`` or ``uvicorn serve.app:app``."""
