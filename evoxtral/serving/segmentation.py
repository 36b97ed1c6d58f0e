"""Long audio -> speech segments of at most ``max_segment_s``, found by silero-vad.

silero-vad gives speech runs; runs closer than ``merge_gap_s`` are joined (so a sigh or a short pause between
two phrases stays in one segment with its context) as long as the joined segment fits the model's 30 s window,
and a run longer than the window is cut (silero-vad cuts at its longest inner silence, then at the limit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SAMPLING_RATE = 16000
VAD_FRAME_SAMPLES = 512  # silero-vad scores one 32 ms frame at a time at 16 kHz
# Below this peak amplitude (about -60 dBFS) a recording carries no usable signal at all.
SILENCE_PEAK = 1e-3


@dataclass(frozen=True)
class Segment:
    start: int  # sample offsets at 16 kHz, end exclusive
    end: int

    @property
    def start_s(self) -> float:
        return self.start / SAMPLING_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLING_RATE


@dataclass(frozen=True)
class SpeechAnalysis:
    """One silero-vad pass over a recording: its speech runs, the segments the model gets, and the speech
    probability of every 32 ms frame (what a segment's no-speech probability is read from)."""

    runs: list[Segment]
    segments: list[Segment]
    frame_probabilities: np.ndarray

    def no_speech_probability(self, start: int, end: int) -> float:
        """1 - the mean speech probability of the frames in [start, end) samples."""
        first, last = start // VAD_FRAME_SAMPLES, max(start // VAD_FRAME_SAMPLES + 1, -(-end // VAD_FRAME_SAMPLES))
        frames = self.frame_probabilities[first:last]
        return round(1.0 - float(frames.mean()), 4) if frames.size else 1.0


def is_silent(audio: np.ndarray) -> bool:
    return audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK


def merge_speech_runs(runs: list[Segment], max_segment_s: float, merge_gap_s: float) -> list[Segment]:
    """Join neighbouring runs separated by at most ``merge_gap_s`` while the result stays within the limit,
    then cut anything still longer than the limit into equal parts."""
    max_samples = int(max_segment_s * SAMPLING_RATE)
    max_gap = int(merge_gap_s * SAMPLING_RATE)
    merged: list[Segment] = []
    for run in sorted(runs, key=lambda segment: segment.start):
        if merged and run.start - merged[-1].end <= max_gap and run.end - merged[-1].start <= max_samples:
            merged[-1] = Segment(merged[-1].start, max(merged[-1].end, run.end))
        else:
            merged.append(run)
    segments = []
    for segment in merged:
        length = segment.end - segment.start
        parts = -(-length // max_samples)
        bounds = np.linspace(segment.start, segment.end, parts + 1).round().astype(int)
        segments.extend(Segment(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]))
    return segments


class SpeechSegmenter:
    """silero-vad's sequence model (ONNX, shipped in its wheel): one ONNX call per ~16 s block instead of a Python
    loop per 32 ms frame, bit-exact with the streaming model, and stateless between calls, so request threads can
    share it."""

    def __init__(self, max_segment_s: float = 30.0, merge_gap_s: float = 1.0, threshold: float = 0.5):
        # Importing silero_vad sets torch's global thread count to 1, which would slow the transcription model.
        threads = torch.get_num_threads()
        from silero_vad import load_silero_vad
        from silero_vad.utils_vad import get_speech_timestamps_from_probs

        torch.set_num_threads(threads)
        # The sequence model's probabilities, then silero's own run finder on them (what
        # get_speech_timestamps_sequence does), so the probabilities stay at hand.
        self._get_speech_timestamps_from_probs = get_speech_timestamps_from_probs
        self._model = load_silero_vad(sequence=True)
        self.max_segment_s = max_segment_s
        self.merge_gap_s = merge_gap_s
        self.threshold = threshold

    def analyse(self, audio: np.ndarray) -> SpeechAnalysis:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        probabilities = self._model.audio_forward(audio, sampling_rate=SAMPLING_RATE)
        stamps = self._get_speech_timestamps_from_probs(
            probabilities,
            sampling_rate=SAMPLING_RATE,
            threshold=self.threshold,
            max_speech_duration_s=self.max_segment_s,
            speech_pad_ms=200,
            audio_length_samples=audio.size,
        )
        runs = [Segment(stamp["start"], stamp["end"]) for stamp in stamps]
        return SpeechAnalysis(runs, merge_speech_runs(runs, self.max_segment_s, self.merge_gap_s), probabilities)

    def speech_runs(self, audio: np.ndarray) -> list[Segment]:
        return self.analyse(audio).runs

    def __call__(self, audio: np.ndarray) -> list[Segment]:
        return self.analyse(audio).segments
