"""Diarizers by name, for the server's `--diarizer` and anything else that picks one from a setting: the offline
embedding diarizers, pyannote, or any object named as module:attribute. Apart from diarizer.py so that the pyannote
backend, which builds on the diarizer's types, is not imported back by them."""

from __future__ import annotations

import importlib

from evoxtral.speakers.diarizer import Diarizer, DiarizerUnavailable, EmbeddingDiarizer
from evoxtral.speakers.embeddings import EMBEDDERS
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)

DIARIZERS = ("mfcc", "resemblyzer", "pyannote")


def load_diarizer(name: str = "mfcc", max_speakers: int = 8) -> Diarizer:
    """A diarizer by name: "mfcc" (offline default), "resemblyzer", "pyannote", or "module:attribute" naming a
    Diarizer object or a class/factory that takes no arguments. Raises DiarizerUnavailable with what to install."""
    if name in EMBEDDERS:
        try:
            return EmbeddingDiarizer(name, max_speakers=max_speakers)
        except ImportError as error:
            raise DiarizerUnavailable(str(error)) from error
    if name == "pyannote":
        from evoxtral.speakers.pyannote_backend import PyannoteDiarizer

        return PyannoteDiarizer()
    module_name, separator, attribute = name.partition(":")
    if not separator:
        raise DiarizerUnavailable(f"unknown diarizer {name!r}: use one of {', '.join(DIARIZERS)} or module:attribute")
    target = getattr(importlib.import_module(module_name), attribute)
    diarizer = target() if isinstance(target, type) else target
    logger.info("diarizer %s loaded from %s", getattr(diarizer, "name", "?"), name)
    return diarizer
