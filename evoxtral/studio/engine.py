"""What the studio does with a recording, without any user interface: decode and check it as the server does,
find its speech (and speakers) with the server's pipeline, transcribe the segments with one of the loaded models,
and keep the result for rendering, editing and export.

Nothing here re-implements the server: decoding and its checks are `evoxtral.serving.uploads.decode_checked`,
segmentation and speakers `evoxtral.serving.pipeline`, the model `evoxtral.serving.transcriber`, and every tag
rule `evoxtral.scoring.tags`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evoxtral.serving.errors import APIError
from evoxtral.serving.pipeline import LazyDiarizer, TranscriptionPlan, plan_transcription, timed_texts
from evoxtral.serving.results import TimedText
from evoxtral.serving.segmentation import SAMPLING_RATE, SpeechSegmenter
from evoxtral.serving.settings import ServeSettings
from evoxtral.serving.transcriber import DecodingOptions, Transcriber, model_transcriber
from evoxtral.serving.uploads import decode_checked
from evoxtral.speakers import DiarizerUnavailable
from evoxtral.utils.logging import get_logger

logger = get_logger("evoxtral.studio")

# progress(fraction done in [0, 1], what is happening)
ProgressCallback = Callable[[float, str], None]


class StudioInputError(ValueError):
    """Input the studio refuses; the message is meant for the user as it is."""


@dataclass(frozen=True)
class StudioResult:
    """One transcription: the decoded audio, its timed segments, and the model and options that produced it."""

    audio: np.ndarray  # 16 kHz mono float32
    segments: list[TimedText]
    model: str
    language: str | None
    diarization_method: str | None = None

    @property
    def duration(self) -> float:
        return self.audio.size / SAMPLING_RATE


def _no_progress(fraction: float, description: str) -> None:
    pass


class StudioEngine:
    """The loaded models (by name: "model", and "base" when an adapter can be switched off) with the server's
    segmenter and diarizer. One model call runs at a time: the models share one set of weights."""

    def __init__(self, settings: ServeSettings, transcribers: Mapping[str, Transcriber]):
        if not transcribers:
            raise ValueError("the studio needs at least one transcriber")
        self.settings = settings
        self.transcribers = dict(transcribers)
        self.segmenter = SpeechSegmenter(settings.max_segment_s, settings.merge_gap_s, settings.vad_threshold)
        self.diarizer = LazyDiarizer(settings.diarizer, settings.max_speakers)
        self._model_lock = threading.Lock()

    @property
    def model_names(self) -> list[str]:
        return list(self.transcribers)

    @property
    def fer_configured(self) -> bool:
        return bool(self.settings.fer_model) and Path(self.settings.fer_model).is_dir()

    def classify_face(
        self, data: bytes, content_type: str | None, filename: str, segments: list[dict] | None = None
    ) -> dict:
        """An image or video through the server's FER classifier (its ONNX export, loaded once); a video's
        per-second emotions aligned with the transcript ``segments`` when given."""
        from evoxtral.fer.inference import FerInputError
        from evoxtral.serving.fer_router import get_fer_classifier

        try:
            classifier = get_fer_classifier.for_settings(self.settings)
            return classifier.classify_upload(data, content_type, filename, segments)
        except APIError as error:
            raise StudioInputError(error.message) from error
        except FerInputError as error:
            raise StudioInputError(str(error)) from error

    def decode(self, path: str | Path | None) -> np.ndarray:
        """A file (an upload or a microphone recording) as checked 16 kHz mono audio, or StudioInputError with the
        server's own message (empty, not audio, unsupported container, too long, silent)."""
        if path is None or not str(path):
            raise StudioInputError("No audio: upload a file or record from the microphone first.")
        path = Path(path)
        try:
            return decode_checked(path, path.name, self.settings)
        except APIError as error:
            raise StudioInputError(error.message) from error

    def plan(self, audio: np.ndarray, diarize: bool = False, num_speakers: int | None = None) -> TranscriptionPlan:
        diarizer = None
        if diarize:
            try:
                diarizer = self.diarizer.get()
            except DiarizerUnavailable as error:
                raise StudioInputError(f"Speakers are not available here: {error}") from error
        return plan_transcription(audio, self.segmenter, diarizer, num_speakers)

    def transcribe_plan(
        self,
        plan: TranscriptionPlan,
        model: str = "model",
        language: str | None = None,
        progress: ProgressCallback = _no_progress,
    ) -> list[TimedText]:
        """The plan's segments through one model, in batches of the server's ``max_batch``, reporting progress."""
        if model not in self.transcribers:
            raise StudioInputError(f"Unknown model {model!r}: choose one of {', '.join(self.transcribers)}.")
        transcriber = self.transcribers[model]
        clips = plan.clips
        options = DecodingOptions(language=language if language is not None else self.settings.default_language)
        transcripts = []
        batch = self.settings.max_batch
        for first in range(0, len(clips), batch):
            progress(first / max(len(clips), 1), f"{model}: segment {first + 1} of {len(clips)}")
            with self._model_lock:
                transcripts.extend(transcriber(clips[first : first + batch], options))
        progress(1.0, f"{model}: {len(clips)} segments transcribed")
        return timed_texts(plan, transcripts)

    def transcribe(
        self,
        path: str | Path | None,
        model: str = "model",
        diarize: bool = False,
        num_speakers: int | None = None,
        language: str | None = None,
        progress: ProgressCallback = _no_progress,
    ) -> StudioResult:
        """A file -> a StudioResult: decode and check, find speech (and speakers), transcribe each segment."""
        progress(0.0, "Decoding the audio")
        audio = self.decode(path)
        progress(0.0, "Finding speech" + (" and speakers" if diarize else ""))
        plan = self.plan(audio, diarize, num_speakers)
        segments = self.transcribe_plan(plan, model, language, progress)
        return StudioResult(
            audio, segments, model, language or self.settings.default_language, plan.diarization_method
        )

    def compare(
        self,
        path: str | Path | None,
        models: tuple[str, str],
        language: str | None = None,
        progress: ProgressCallback = _no_progress,
    ) -> tuple[StudioResult, StudioResult]:
        """The same clip through two models: decoded and segmented once, so both transcribe the same segments."""
        audio = self.decode(path)
        plan = self.plan(audio)
        language = language or self.settings.default_language
        results = []
        for step, model in enumerate(models):
            segments = self.transcribe_plan(
                plan, model, language, lambda fraction, text, step=step: progress((step + fraction) / 2, text)
            )
            results.append(StudioResult(audio, segments, model, language))
        return results[0], results[1]


def model_transcribers(settings: ServeSettings) -> dict[str, Transcriber]:
    """The model the settings name, loaded once, as "model"; with an adapter also as "base", the same weights with
    the adapter switched off (peft's disable_adapter), so comparing base and adapter costs no second copy."""
    from evoxtral.model.loading import load_model_and_processor

    logger.info("loading model %s (adapter: %s)", settings.model, settings.adapter or "none")
    model, processor = load_model_and_processor(
        settings.model, adapter=settings.adapter, dtype=settings.dtype, device=settings.device
    )
    adapted = model_transcriber(model, processor, settings.max_new_tokens)
    if not hasattr(model, "disable_adapter"):
        return {"model": adapted}

    def base(clips, options):
        with model.disable_adapter():
            return adapted(clips, options)

    return {"model": adapted, "base": base}
