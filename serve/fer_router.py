"""`POST /fer`: facial emotions of an uploaded image, or per second of a video (optionally aligned with transcript
segments), from the ONNX classifier that recipes/fer_onnx.py exports. Mount with `app.include_router(router)`.

Settings (environment): EVOXTRAL_FER_MODEL (the export folder, required), EVOXTRAL_FER_MODEL_FILE (model.onnx or
model_quantized.onnx), EVOXTRAL_FER_MAX_PIXELS, EVOXTRAL_FER_MAX_VIDEO_SECONDS, EVOXTRAL_FER_MAX_UPLOAD_MB."""

import os
from functools import lru_cache

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile

from evoxtral.fer.inference import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_VIDEO_SECONDS,
    FerClassifier,
    FerInputError,
    InputTooLargeError,
    NotAnImageError,
    parse_segments,
)

router = APIRouter(tags=["facial emotion"])

# 413 for what is too big, 415 for what is not an image or a video, 422 for the rest (bad segments, broken video).
STATUS_BY_ERROR = {InputTooLargeError: 413, NotAnImageError: 415}


@lru_cache(maxsize=1)
def get_fer_classifier() -> FerClassifier:
    model_dir = os.environ.get("EVOXTRAL_FER_MODEL")
    if not model_dir or not os.path.isdir(model_dir):
        raise HTTPException(503, "Facial emotion recognition is not configured: set EVOXTRAL_FER_MODEL to an export")
    return FerClassifier(
        model_dir,
        model_file=os.environ.get("EVOXTRAL_FER_MODEL_FILE", "model.onnx"),
        max_pixels=int(os.environ.get("EVOXTRAL_FER_MAX_PIXELS", DEFAULT_MAX_PIXELS)),
        max_video_seconds=float(os.environ.get("EVOXTRAL_FER_MAX_VIDEO_SECONDS", DEFAULT_MAX_VIDEO_SECONDS)),
    )


def max_upload_bytes() -> int:
    return int(float(os.environ.get("EVOXTRAL_FER_MAX_UPLOAD_MB", 200)) * 1024 * 1024)


@router.post("/fer")
def recognise_facial_emotion(
    file: UploadFile = File(..., description="An image, or a video (sampled at 1 frame per second)"),
    segments: str | None = Form(None, description='Transcript segments as JSON: [{"start", "end", "text"}]'),
    classifier: FerClassifier = Depends(get_fer_classifier),
) -> dict:
    # A plain `def`: FastAPI runs it in its thread pool, so decoding and inference do not block the event loop.
    data = file.file.read(max_upload_bytes() + 1)
    if len(data) > max_upload_bytes():
        raise HTTPException(413, f"Upload exceeds {max_upload_bytes() // (1024 * 1024)} MB")
    if not data:
        raise HTTPException(422, "The uploaded file is empty")
    try:
        parsed_segments = parse_segments(segments) if segments else None
        return classifier.classify_upload(data, file.content_type, file.filename, parsed_segments)
    except FerInputError as error:
        raise HTTPException(STATUS_BY_ERROR.get(type(error), 422), str(error)) from error
