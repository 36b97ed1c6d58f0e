"""`POST /fer`: facial emotions of an uploaded image, or per second of a video (optionally aligned with transcript
segments), from the ONNX classifier that recipes/fer_onnx.py exports.

Mounted next to the transcription API by the served app (serve/app.py), whose middleware limits the upload size
and checks the API key and whose handlers render errors as `{"error": {"message", "type", "param", "code"}}`. The
model comes from the app's ServeSettings (`fer_model`, `fer_model_file`, `fer_max_pixels`,
`fer_max_video_seconds`: flags or EVOXTRAL_FER_* variables, read once with the rest of the settings); until
`fer_model` names an export folder the route answers 503.
"""

import os

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from evoxtral.fer.inference import (
    FerClassifier,
    FerInputError,
    InputTooLargeError,
    InvalidSegmentsError,
    NotAnImageError,
    UndecodableVideoError,
    parse_segments,
)
from evoxtral.serving.errors import APIError
from evoxtral.serving.settings import ServeSettings

router = APIRouter(tags=["facial emotion"])

# (status, code, form field) per input error, in the transcription API's conventions.
ERRORS = {
    NotAnImageError: (400, "invalid_media", "file"),
    UndecodableVideoError: (400, "invalid_video", "file"),
    InputTooLargeError: (400, "media_too_large", "file"),
    InvalidSegmentsError: (400, "invalid_value", "segments"),
}


class FerClassifierDependency:
    """The classifier the serving settings name, loaded once per configuration (a FastAPI dependency).

    Inside a request the settings are the app's (`app.state.settings`); an app built without them, or a call
    outside a request, reads them from the environment through ServeSettings.
    """

    def __init__(self):
        self._loaded: tuple[tuple, FerClassifier] | None = None

    def __call__(self, request: Request = None) -> FerClassifier:
        settings = getattr(request.app.state, "settings", None) if request is not None else None
        return self.for_settings(settings or ServeSettings.from_env())

    def for_settings(self, settings: ServeSettings) -> FerClassifier:
        """The classifier these settings name (loaded once), or a 503 APIError when none is configured."""
        if not settings.fer_model or not os.path.isdir(settings.fer_model):
            raise APIError(
                503, "fer_not_configured", "Facial emotion recognition is not configured: set EVOXTRAL_FER_MODEL."
            )
        key = (settings.fer_model, settings.fer_model_file, settings.fer_max_pixels, settings.fer_max_video_seconds)
        if self._loaded is None or self._loaded[0] != key:
            limits = {"max_pixels": settings.fer_max_pixels, "max_video_seconds": settings.fer_max_video_seconds}
            classifier = FerClassifier(
                settings.fer_model,
                model_file=settings.fer_model_file,
                **{name: value for name, value in limits.items() if value is not None},
            )
            self._loaded = (key, classifier)
        return self._loaded[1]

    def cache_clear(self) -> None:
        """Forget the loaded classifier, so the next call loads the one the settings name then."""
        self._loaded = None


get_fer_classifier = FerClassifierDependency()


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
