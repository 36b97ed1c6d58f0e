"""Who spoke when: speaker embeddings, clustering, the diarizer interface with an offline default and a pyannote
backend, and espeak-ng dialogues with known turns to measure them on. Used by the server's diarized routes and by
anything else that wants speakers (``load_diarizer("mfcc")(audio, speech_regions)`` -> speaker turns)."""

from evoxtral.speakers.diarizer import Diarizer, DiarizerUnavailable, EmbeddingDiarizer, SpeakerTurn
from evoxtral.speakers.registry import load_diarizer

__all__ = ["Diarizer", "DiarizerUnavailable", "EmbeddingDiarizer", "SpeakerTurn", "load_diarizer"]
