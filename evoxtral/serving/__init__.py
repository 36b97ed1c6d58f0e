"""The transcription server: settings, audio segmentation, micro-batching, response formats and the FastAPI app."""

from evoxtral.serving.app import create_app, include_routers
from evoxtral.serving.pipeline import transcribe_with_speakers
from evoxtral.serving.settings import ServeSettings, settings_from_cli

__all__ = ["ServeSettings", "create_app", "include_routers", "settings_from_cli", "transcribe_with_speakers"]
