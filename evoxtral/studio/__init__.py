"""The studio: a Gradio app over the server's own pipeline (upload or record, tagged transcript with highlighted
tags, a timeline of segments with emotions and speakers, editing and export, model comparison, facial emotion)."""

from evoxtral.studio.engine import StudioEngine, StudioInputError, StudioResult

__all__ = ["StudioEngine", "StudioInputError", "StudioResult"]
