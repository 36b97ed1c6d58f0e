"""`POST /fer`: facial emotions of an uploaded image, or per second of a video (optionally aligned with transcript
segments), from the ONNX classifier that recipes/fer_onnx.py exports.

Mounted next to the transcription API ("serve.fer_router:router"), whose middleware limits the upload size and
checks the API key and whose handlers render errors as `{"error": {"message", "type", "param", "code"}}`.
Settings (environment): EVOXTRAL_FER_MODEL (the export folder, required), EVOXTRAL_FER_MODEL_FILE (model.onnx or
model_quantized.onnx), EVOXTRAL_FER_MAX_PIXELS, EVOXTRAL_FER_MAX_VIDEO_SECONDS."""

import os
from functools import lru_cache

from fastapi import APIRouter, Depends, File, Form, UploadFile

from evoxtral.fer.inference import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_VIDEO_SECONDS,
    FerClassifier,
    FerInputError,
    InputTooLargeError,
    InvalidSegmentsError,
    NotAnImageError,
    UndecodableVideoError,
    parse_segments,
)
from evoxtral.serving.errors import APIError

router = APIRouter(tags=["facial emotion"])

# (status, code, form field) per input error, in the transcription API's conventions.
ERRORS = {
    NotAnImageError: (400, "invalid_media", "file"),
    UndecodableVideoError: (400, "invalid_video", "file"),
    InputTooLargeError: (400, "media_too_large", "file"),
    InvalidSegmentsError: (400, "invalid_value", "segments"),
}


@lru_cache(maxsize=1)
def get_fer_classifier() -> FerClassifier:
    model_dir = os.environ.get("EVOXTRAL_FER_MODEL")
    if not model_dir or not os.path.isdir(model_dir):
        raise APIError(
            503, "fer_not_configured", "Facial emotion recognition is not configured: set EVOXTRAL_FER_MODEL."
        )
    return FerClassifier(
        model_dir,
        model_file=os.environ.get("EVOXTRAL_FER_MODEL_FILE", "model.onnx"),
        max_pixels=int(os.environ.get("EVOXTRAL_FER_MAX_PIXELS", DEFAULT_MAX_PIXELS)),
        max_video_seconds=float(os.environ.get("EVOXTRAL_FER_MAX_VIDEO_SECONDS", DEFAULT_MAX_VIDEO_SECONDS)),
    )


@router.post("/fer", summary="Facial emotion of an image, or per second of a video aligned with transcript segments")
def recognise_facial_emotion(
    file: UploadFile = File(..., description="An image, or a video (sampled at 1 frame per second)"),
    segments: str | None = Form(
        None, description='Transcript segments as JSON ([{"start", "end", "text"}] or a /transcribe response)'
    ),
    classifier: FerClassifier = Depends(get_fer_classifier),
) -> dict:
    # A plain `def`: FastAPI runs it in its thread pool, so decoding and inference do not block the event loop.
    data = file.file.read()
    if not data:
        raise APIError(400, "empty_file", "The uploaded file is empty.", "file")
    try:
        parsed_segments = parse_segments(segments) if segments else None
        return classifier.classify_upload(data, file.content_type, file.filename, parsed_segments)
    except FerInputError as error:
        status, code, param = ERRORS.get(type(error), (400, "invalid_media", "file"))
        raise APIError(status, code, str(error), param) from error
