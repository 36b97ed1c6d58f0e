"""Who spoke when: the diarizer interface, the offline embedding diarizer, and pyannote for those with its weights.

A diarizer takes 16 kHz mono audio and the speech regions a voice-activity detector found (the server passes
silero-vad's runs), and returns speaker turns: spans of speech labelled "Speaker 1", "Speaker 2" ... in order of
first appearance. The embedding diarizer cuts each speech region into windows of at most ``window_s``, embeds every
window (evoxtral.speakers.embeddings), clusters the embeddings (evoxtral.speakers.clustering) and joins neighbouring
windows of the same speaker into turns, so a change of speaker inside a region without a pause is found at a window
edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from evoxtral.data.audio import SAMPLING_RATE
from evoxtral.speakers.clustering import Clustering, cluster_speakers
from evoxtral.speakers.embeddings import EMBEDDERS, SpeakerEmbedder

SpeechRegion = tuple[float, float]  # (start, end) in seconds


@dataclass(frozen=True)
class SpeakerTurn:
    start: float  # seconds
    end: float
    speaker: str  # "Speaker 1", "Speaker 2" ... in order of first appearance


class DiarizerUnavailable(RuntimeError):
    """The diarizer asked for cannot run here (a package or model weights missing); the message says what to do."""


class Diarizer(Protocol):
    name: str

    def __call__(
        self, audio: np.ndarray, speech: Sequence[SpeechRegion], num_speakers: int | None = None
    ) -> list[SpeakerTurn]: ...


def speaker_name(index: int) -> str:
    return f"Speaker {index + 1}"


def windows_of(speech: Sequence[SpeechRegion], window_s: float) -> list[SpeechRegion]:
    """Each region cut into equal windows of at most ``window_s`` (a region shorter than that is one window)."""
    windows = []
    for start, end in speech:
        parts = max(1, math.ceil((end - start) / window_s - 1e-9))
        bounds = np.linspace(start, end, parts + 1)
        windows.extend((float(a), float(b)) for a, b in zip(bounds[:-1], bounds[1:]))
    return windows


def turns_from_labels(windows: Sequence[SpeechRegion], labels: Sequence[int]) -> list[SpeakerTurn]:
    """Neighbouring windows with the same label joined (across pauses too); speakers renamed by first appearance."""
    names: dict[int, str] = {}
    turns: list[SpeakerTurn] = []
    for (start, end), label in zip(windows, labels):
        name = names.setdefault(int(label), speaker_name(len(names)))
        if turns and turns[-1].speaker == name:
            turns[-1] = SpeakerTurn(turns[-1].start, end, name)
        else:
            turns.append(SpeakerTurn(start, end, name))
    return turns


class EmbeddingDiarizer:
    """Windows -> speaker embeddings -> clustering -> turns; fully offline."""

    def __init__(
        self,
        embedder: SpeakerEmbedder | str = "mfcc",
        window_s: float = 1.5,
        min_window_s: float = 0.25,
        max_speakers: int = 8,
    ):
        self.embedder = EMBEDDERS[embedder]() if isinstance(embedder, str) else embedder
        self.name = self.embedder.name
        self.window_s = window_s
        self.min_window_s = min_window_s
        self.max_speakers = max_speakers

    def cluster(
        self, audio: np.ndarray, speech: Sequence[SpeechRegion], num_speakers: int | None = None
    ) -> tuple[list[SpeechRegion], list[int], Clustering]:
        """The windows, a speaker label for each, and the clustering (with its count score) behind them."""
        windows = windows_of(speech, self.window_s)
        if not windows:
            return [], [], Clustering(np.zeros(0, int), 0, None)
        # Windows too short for a voice print take the label of the nearest longer one.
        usable = [i for i, (start, end) in enumerate(windows) if end - start >= self.min_window_s]
        usable = usable or [max(range(len(windows)), key=lambda i: windows[i][1] - windows[i][0])]
        clips = [_pad_to(audio[round(windows[i][0] * SAMPLING_RATE) : round(windows[i][1] * SAMPLING_RATE)],
                         self.min_window_s) for i in usable]  # fmt: skip
        prints = self.embedder.embed(clips)
        clustering = cluster_speakers(prints.vectors, prints.distinct_voices, num_speakers, self.max_speakers)
        return windows, _nearest_labels(windows, usable, clustering.labels), clustering

    def __call__(
        self, audio: np.ndarray, speech: Sequence[SpeechRegion], num_speakers: int | None = None
    ) -> list[SpeakerTurn]:
        windows, labels, _ = self.cluster(audio, speech, num_speakers)
        return turns_from_labels(windows, labels)


def _pad_to(clip: np.ndarray, seconds: float) -> np.ndarray:
    needed = int(seconds * SAMPLING_RATE) - len(clip)
    return np.pad(clip, (0, needed)) if needed > 0 else clip


def _nearest_labels(windows: Sequence[SpeechRegion], usable: list[int], labels: np.ndarray) -> list[int]:
    """Every window's label: its own when it was clustered, else that of the clustered window nearest in time."""
    centres = np.array([(windows[i][0] + windows[i][1]) / 2 for i in usable])
    by_window = dict(zip(usable, labels))
    return [
        int(by_window[i]) if i in by_window else int(labels[np.argmin(np.abs(centres - (a + b) / 2))])
        for i, (a, b) in enumerate(windows)
    ]
