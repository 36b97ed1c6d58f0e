"""Speaker embeddings of short speech windows: one vector per window, closer for the same voice, and a test of
whether a split of the windows into two groups separates two voices or just two kinds of content.

Two offline embedders, both working with nothing downloaded:

* ``MfccEmbedder`` (the default): a signal-processing voice print. Each window is the mean of its MFCCs 1-19
  (librosa, 25 ms frames every 10 ms; coefficient 0, the loudness, left out), standardised per dimension over the
  recording before clustering. One voice or two is decided on the frames themselves with the Bayesian information
  criterion test of speaker segmentation (Chen & Gopalakrishnan, 1998): two full-covariance Gaussians, one per
  group, against one for all frames; the split stands when the likelihood gain exceeds ``bic_penalty`` times BIC's
  parameter cost.
* ``ResemblyzerEmbedder``: Resemblyzer's GE2E speaker encoder (a 3-layer LSTM over 40 mel bands), whose weights
  ship inside its PyPI package (``pip install resemblyzer webrtcvad-wheels``); two groups are two voices when their
  mean cosine distance exceeds ``distinct_distance``.

How they compare on espeak-ng dialogues (the measurement that made MFCCs the default): serve/README.md and
bench/diarization.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from evoxtral.data.audio import SAMPLING_RATE


@dataclass(frozen=True)
class VoicePrints:
    """One recording's windows embedded: the vectors to cluster (cosine), and the embedder's test of whether the
    windows labelled 0 and 1 hold two voices (a decision and the score behind it)."""

    vectors: np.ndarray
    distinct_voices: Callable[[np.ndarray], tuple[bool, float]]


class SpeakerEmbedder(Protocol):
    name: str

    def embed(self, windows: Sequence[np.ndarray]) -> VoicePrints:
        """16 kHz mono windows -> their voice prints (stateless: requests may embed concurrently)."""


class MfccEmbedder:
    name = "mfcc"

    def __init__(self, n_mfcc: int = 20, bic_penalty: float = 1.5):
        self.n_mfcc = n_mfcc
        self.bic_penalty = bic_penalty

    def embed(self, windows: Sequence[np.ndarray]) -> VoicePrints:
        import librosa

        frames = [
            librosa.feature.mfcc(
                y=np.asarray(window, np.float32), sr=SAMPLING_RATE, n_mfcc=self.n_mfcc, n_fft=400, hop_length=160
            )[1:].T
            for window in windows
        ]
        if not frames:
            return VoicePrints(np.zeros((0, self.n_mfcc - 1)), lambda labels: (False, 0.0))
        means = np.stack([window_frames.mean(axis=0) for window_frames in frames])
        # Standardised over the recording: the channel and the speaker-independent spectrum cancel out.
        vectors = (means - means.mean(axis=0)) / (means.std(axis=0) + 1e-8)

        def distinct_voices(labels: np.ndarray) -> tuple[bool, float]:
            groups = [np.concatenate([f for f, label in zip(frames, labels) if label == g]) for g in (0, 1)]
            score = delta_bic_ratio(*groups)
            return score > self.bic_penalty, score

        return VoicePrints(vectors, distinct_voices)


def delta_bic_ratio(first: np.ndarray, second: np.ndarray) -> float:
    """ΔBIC's likelihood gain of modelling two frame sets with a Gaussian each instead of one, over BIC's parameter
    penalty (so 1.0 is the textbook decision threshold): larger means more distinct."""
    both = np.concatenate([first, second])
    dim = both.shape[1]

    def log_det(frames: np.ndarray) -> float:
        return float(np.linalg.slogdet(np.cov(frames, rowvar=False) + 1e-6 * np.eye(dim))[1])

    gain = 0.5 * (len(both) * log_det(both) - len(first) * log_det(first) - len(second) * log_det(second))
    penalty = 0.5 * (dim + dim * (dim + 1) / 2) * np.log(len(both))
    return float(gain / penalty)


class ResemblyzerEmbedder:
    name = "resemblyzer"

    def __init__(self, device: str = "cpu", distinct_distance: float = 0.35):
        try:
            from resemblyzer import VoiceEncoder
            from resemblyzer.audio import normalize_volume
            from resemblyzer.hparams import audio_norm_target_dBFS
        except ImportError as error:
            raise ImportError(
                "the resemblyzer embedder needs `pip install resemblyzer webrtcvad-wheels` "
                f"(its speaker encoder ships in the package): {error}"
            ) from error
        self._encoder = VoiceEncoder(device, verbose=False)
        self._normalise = lambda window: normalize_volume(window, audio_norm_target_dBFS, increase_only=True)
        self.distinct_distance = distinct_distance

    def embed(self, windows: Sequence[np.ndarray]) -> VoicePrints:
        from sklearn.metrics.pairwise import cosine_distances

        embedded = [self._encoder.embed_utterance(self._normalise(np.asarray(w, np.float32))) for w in windows]
        vectors = np.stack(embedded) if embedded else np.zeros((0, 256))

        def distinct_voices(labels: np.ndarray) -> tuple[bool, float]:
            distance = float(cosine_distances(vectors[labels == 0], vectors[labels == 1]).mean())
            return distance > self.distinct_distance, distance

        return VoicePrints(vectors, distinct_voices)


EMBEDDERS = {"mfcc": MfccEmbedder, "resemblyzer": ResemblyzerEmbedder}
