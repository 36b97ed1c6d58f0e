"""Face finding for emotion recognition: OpenCV's bundled frontal-face Haar cascade, with a centre crop when no
face is found."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

FRONTAL_FACE_CASCADE = "haarcascade_frontalface_default.xml"

_cascades = threading.local()  # a CascadeClassifier is not safe to share between server threads


def _face_cascade() -> cv2.CascadeClassifier:
    if not hasattr(_cascades, "frontal_face"):
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + FRONTAL_FACE_CASCADE)
        if cascade.empty():
            raise RuntimeError(f"OpenCV could not load {FRONTAL_FACE_CASCADE} from {cv2.data.haarcascades}")
        _cascades.frontal_face = cascade
    return _cascades.frontal_face


@dataclass(frozen=True)
class FaceCrop:
    """A square region (pixels, x/y of the top-left corner) to classify, and whether a face detector found it
    (False: the centre-crop fallback)."""

    x: int
    y: int
    size: int
    face_detected: bool

    def crop(self, rgb: np.ndarray) -> np.ndarray:
        return rgb[self.y : self.y + self.size, self.x : self.x + self.size]

    def box(self) -> list[int]:
        return [self.x, self.y, self.size, self.size]


def detect_faces(rgb: np.ndarray, min_face_fraction: float = 0.06) -> list[tuple[int, int, int, int]]:
    """Frontal faces as (x, y, width, height), largest first; faces smaller than `min_face_fraction` of the
    image's shorter side are ignored (too small to read an expression from)."""
    grey = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY))
    min_side = max(20, round(min(grey.shape) * min_face_fraction))
    faces = _face_cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    return sorted((tuple(int(v) for v in face) for face in faces), key=lambda f: f[2] * f[3], reverse=True)


def face_crops(rgb: np.ndarray, margin: float = 0.2, max_faces: int = 4) -> list[FaceCrop]:
    """Square crops around the largest detected faces, widened by `margin` on each side (expression datasets
    such as AffectNet crop with some forehead and chin), clipped to the image; one centre crop of the shorter
    side when no face is found."""
    height, width = rgb.shape[:2]
    crops = []
    for x, y, w, h in detect_faces(rgb)[:max_faces]:
        size = min(round(max(w, h) * (1 + 2 * margin)), width, height)
        left = min(max(0, round(x + w / 2 - size / 2)), width - size)
        top = min(max(0, round(y + h / 2 - size / 2)), height - size)
        crops.append(FaceCrop(left, top, size, face_detected=True))
    if not crops:
        size = min(width, height)
        crops.append(FaceCrop((width - size) // 2, (height - size) // 2, size, face_detected=False))
    return crops
