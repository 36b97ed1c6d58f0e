"""Facial-emotion inference with onnxruntime: image or video -> faces -> the model's preprocessing -> class
probabilities; per-second emotions of a video, and the dominant emotion of each transcript segment."""

from __future__ import annotations

import io
import json
import math
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
from PIL import Image, ImageOps, UnidentifiedImageError

from evoxtral.fer.faces import face_crops

DEFAULT_MAX_PIXELS = 40_000_000  # a 40-megapixel photo; larger uploads are refused before decoding
DEFAULT_MAX_VIDEO_SECONDS = 600.0
SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


class FerInputError(ValueError):
    """Input the classifier cannot answer for; a server maps it to a 4xx reply."""


class NotAnImageError(FerInputError):
    pass


class InputTooLargeError(FerInputError):
    pass


class UndecodableVideoError(FerInputError):
    pass


class InvalidSegmentsError(FerInputError):
    pass


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Image bytes -> RGB uint8 array, upright per EXIF. The size is checked from the header, before the
    pixels are decoded."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise InputTooLargeError(f"Image too large: {error}") from error
    except (UnidentifiedImageError, OSError) as error:
        raise NotAnImageError("The file is not an image that Pillow can read") from error
    width, height = image.size
    if width * height > max_pixels:
        raise InputTooLargeError(f"Image of {width}x{height} pixels exceeds the limit of {max_pixels:,} pixels")
    try:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, ValueError, SyntaxError) as error:
        raise NotAnImageError(f"The image could not be decoded: {error}") from error


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class FerClassifier:
    """An exported classifier folder (model.onnx, config.json with the labels, preprocessor_config.json)."""

    def __init__(
        self,
        model_dir: str | Path,
        model_file: str = "model.onnx",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_video_seconds: float = DEFAULT_MAX_VIDEO_SECONDS,
    ):
        from transformers import AutoImageProcessor

        self.model_dir = Path(model_dir)
        self.model_path = self.model_dir / model_file
        self.session = onnxruntime.InferenceSession(str(self.model_path), providers=["CPUExecutionProvider"])
        self.image_processor = AutoImageProcessor.from_pretrained(self.model_dir)
        id2label = json.loads((self.model_dir / "config.json").read_text())["id2label"]
        self.labels = [id2label[str(i)] for i in range(len(id2label))]
        self.max_pixels = max_pixels
        self.max_video_seconds = max_video_seconds

    def pixel_values(self, crops: list[np.ndarray]) -> np.ndarray:
        return self.image_processor(images=crops, return_tensors="np")["pixel_values"].astype(np.float32)

    def logits(self, pixel_values: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"pixel_values": pixel_values})[0]

    def _scored(self, probabilities: np.ndarray) -> dict:
        return {
            "emotion": self.labels[int(probabilities.argmax())],
            "scores": {label: float(p) for label, p in zip(self.labels, probabilities)},
        }

    def classify_image(self, rgb: np.ndarray) -> dict:
        """The largest face's emotion (top level) and every face's; `face_detected` False means no face was
        found and the answer is for a centre crop of the picture."""
        height, width = rgb.shape[:2]
        if width * height > self.max_pixels:
            raise InputTooLargeError(f"Image of {width}x{height} pixels exceeds the limit of {self.max_pixels:,}")
        crops = face_crops(rgb)
        probabilities = softmax(self.logits(self.pixel_values([crop.crop(rgb) for crop in crops])))
        faces = [
            {"box": crop.box(), "face_detected": crop.face_detected, **self._scored(p)}
            for crop, p in zip(crops, probabilities)
        ]
        return {**faces[0], "faces": faces}

    def classify_image_bytes(self, data: bytes) -> dict:
        return self.classify_image(decode_image(data, self.max_pixels))

    def classify_video(self, path: str | Path, sample_fps: float = 1.0) -> dict:
        """Emotion of the largest face in one frame per 1/`sample_fps` seconds."""
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise UndecodableVideoError("The file is not a video OpenCV can decode")
            fps = capture.get(cv2.CAP_PROP_FPS)
            if not fps or not math.isfinite(fps) or fps <= 0:
                raise UndecodableVideoError("The video has no usable frame rate")
            frame_count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
            if frame_count > 0 and frame_count / fps > self.max_video_seconds:
                raise InputTooLargeError(
                    f"Video of {frame_count / fps:.0f} s exceeds the limit of {self.max_video_seconds:.0f} s"
                )
            seconds = []
            frame_index = 0
            next_sample = 0.0
            while capture.grab():
                frame_time = frame_index / fps
                frame_index += 1
                if frame_time + 0.5 / fps < next_sample:
                    continue
                if frame_time > self.max_video_seconds:
                    raise InputTooLargeError(f"Video exceeds the limit of {self.max_video_seconds:.0f} s")
                ok, bgr = capture.retrieve()
                if not ok:
                    break
                prediction = self.classify_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                seconds.append(
                    {
                        "time": round(frame_time, 3),
                        "emotion": prediction["emotion"],
                        "scores": prediction["scores"],
                        "face_detected": prediction["face_detected"],
                    }
                )
                next_sample += 1.0 / sample_fps
            if not seconds:
                raise UndecodableVideoError("No frame of the video could be decoded")
            return {"sample_fps": sample_fps, "duration": round(frame_index / fps, 3), "seconds": seconds}
        finally:
            capture.release()

    def classify_video_bytes(self, data: bytes, suffix: str = ".mp4", sample_fps: float = 1.0) -> dict:
        # OpenCV reads videos from files only.
        with tempfile.NamedTemporaryFile(suffix=suffix) as video_file:
            video_file.write(data)
            video_file.flush()
            return self.classify_video(video_file.name, sample_fps)

    def classify_upload(
        self,
        data: bytes,
        content_type: str | None = None,
        filename: str | None = None,
        segments: list[dict] | None = None,
    ) -> dict:
        """An uploaded image or video, told apart by its declared content type or, failing that, by which
        decoder accepts it. `segments` (transcript segments) are aligned with a video's per-second emotions."""
        content_type = (content_type or "").lower()
        declared_video = content_type.startswith("video/")
        rgb = None
        if not declared_video:
            try:
                rgb = decode_image(data, self.max_pixels)
            except NotAnImageError:
                if content_type.startswith("image/"):
                    raise
        if rgb is not None:
            if segments is not None:
                raise InvalidSegmentsError("Transcript segments can only be aligned with a video")
            return {"kind": "image", **self.classify_image(rgb)}
        suffix = Path(filename or "").suffix
        try:
            # The suffix helps OpenCV pick a demuxer; a client's odd one is not used in a path.
            video = self.classify_video_bytes(data, suffix if SAFE_SUFFIX.match(suffix) else ".mp4")
        except UndecodableVideoError as error:
            if declared_video:
                raise
            raise NotAnImageError("The file is neither an image nor a video that can be decoded") from error
        if segments is not None:
            video["segments"] = align_emotions_to_segments(video["seconds"], segments, 1.0 / video["sample_fps"])
        return {"kind": "video", **video}


def parse_segments(raw: str | list) -> list[dict]:
    """Transcript segments as JSON text or a list: each {"start": s, "end": s, "text": ...} with start <= end."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise InvalidSegmentsError(f"segments is not valid JSON: {error}") from error
    if isinstance(raw, dict) and "segments" in raw:
        raw = raw["segments"]
    if not isinstance(raw, list):
        raise InvalidSegmentsError("segments must be a list of {start, end, text} objects")
    segments = []
    for index, segment in enumerate(raw):
        try:
            start, end = float(segment["start"]), float(segment["end"])
        except (TypeError, KeyError, ValueError) as error:
            raise InvalidSegmentsError(f"segment {index} needs numeric start and end: {segment!r}") from error
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
            raise InvalidSegmentsError(f"segment {index} must have 0 <= start <= end: {segment!r}")
        segments.append({**segment, "start": start, "end": end})
    return segments


def align_emotions_to_segments(seconds: list[dict], segments: list[dict], sample_period: float = 1.0) -> list[dict]:
    """Each segment's dominant facial emotion: the class with the highest score summed over the samples it
    overlaps, each sample weighted by how long it overlaps (a sample at time t stands for [t, t + sample_period)).
    A segment between two samples takes the nearest one. The segment's other keys are kept (a /transcribe
    segment's own `emotion`, read from its audio tags, included): the answer goes to `facial_emotion` and
    `facial_scores`."""
    aligned = []
    for segment in segments:
        start, end = float(segment["start"]), float(segment["end"])
        totals: dict[str, float] = {}
        for sample in seconds:
            overlap = min(end, sample["time"] + sample_period) - max(start, sample["time"])
            if overlap > 0:
                for label, score in sample["scores"].items():
                    totals[label] = totals.get(label, 0.0) + overlap * score
        if not totals and seconds:
            middle = (start + end) / 2
            nearest = min(seconds, key=lambda sample: abs(sample["time"] + sample_period / 2 - middle))
            totals = dict(nearest["scores"])
        if totals:
            norm = sum(totals.values())
            scores = {label: total / norm for label, total in totals.items()}
            emotion = max(scores, key=scores.get)
        else:
            scores, emotion = {}, None
        aligned.append({**segment, "facial_emotion": emotion, "facial_scores": scores})
    return aligned
