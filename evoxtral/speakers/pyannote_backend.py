"""pyannote.audio as a diarizer, for users who have its weights (``pip install pyannote.audio``; the pipeline is a
gated Hub model: accept its terms, then set HF_TOKEN, or give a local folder)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from evoxtral.data.audio import SAMPLING_RATE
from evoxtral.speakers.diarizer import DiarizerUnavailable, SpeakerTurn, SpeechRegion, speaker_name

DEFAULT_PIPELINE = "pyannote/speaker-diarization-3.1"


class PyannoteDiarizer:
    name = "pyannote"

    def __init__(self, pipeline: str | None = None, device: str = "cpu", loaded_pipeline=None):
        """``pipeline``: a Hub id or local folder (default $EVOXTRAL_PYANNOTE_PIPELINE or 3.1); ``loaded_pipeline``:
        an already built pyannote Pipeline (or anything called the same way)."""
        self._pipeline = loaded_pipeline or _load_pipeline(
            pipeline or os.environ.get("EVOXTRAL_PYANNOTE_PIPELINE") or DEFAULT_PIPELINE, device
        )

    def __call__(
        self, audio: np.ndarray, speech: Sequence[SpeechRegion] = (), num_speakers: int | None = None
    ) -> list[SpeakerTurn]:
        """pyannote finds speech itself; ``speech`` is accepted for the interface and not used."""
        import torch

        waveform = {"waveform": torch.from_numpy(np.asarray(audio, np.float32))[None], "sample_rate": SAMPLING_RATE}
        output = self._pipeline(waveform, **({"num_speakers": num_speakers} if num_speakers else {}))
        # pyannote.audio 4 wraps the annotation in an output object; 3.x returns the annotation itself.
        annotation = getattr(output, "speaker_diarization", output)
        names: dict[str, str] = {}
        turns = []
        for segment, _, label in sorted(annotation.itertracks(yield_label=True), key=lambda track: track[0].start):
            name = names.setdefault(label, speaker_name(len(names)))
            turns.append(SpeakerTurn(float(segment.start), float(segment.end), name))
        return turns


def _load_pipeline(name: str, device: str):
    try:
        from pyannote.audio import Pipeline
    except ImportError as error:
        raise DiarizerUnavailable(
            "the pyannote diarizer needs `pip install pyannote.audio` and its pipeline weights; "
            "the offline default (--diarizer mfcc) needs neither"
        ) from error
    token = os.environ.get("HF_TOKEN")
    try:
        pipeline = Pipeline.from_pretrained(name, token=token) if token else Pipeline.from_pretrained(name)
    except Exception as error:  # gated model without a token, no network, a bad folder: pyannote's own message
        raise DiarizerUnavailable(f"could not load the pyannote pipeline {name!r}: {error}") from error
    if pipeline is None:  # pyannote 3.x returns None when the gated download is refused
        raise DiarizerUnavailable(f"pyannote pipeline {name!r} is gated: accept its terms and set HF_TOKEN")
    import torch

    return pipeline.to(torch.device(device))
