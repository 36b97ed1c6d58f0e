"""Audio -> the segments the model transcribes (with their speakers when asked) -> timed, tagged text.

The server's routes and anything without HTTP (the studio) share this: `plan_transcription` runs silero-vad once
and, when speakers are asked for, the diarizer over its speech runs, then cuts the speech into model segments that
never straddle a change of speaker; `timed_texts` puts the transcripts back on the timeline with their speakers.
`transcribe_with_speakers` is the whole path in one synchronous call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evoxtral.serving.results import TimedText
from evoxtral.serving.segmentation import SAMPLING_RATE, Segment, SpeechAnalysis, SpeechSegmenter, merge_speech_runs
from evoxtral.serving.transcriber import DecodingOptions, SegmentTranscript, Transcriber, as_segment_transcript
from evoxtral.speakers import Diarizer, SpeakerTurn, load_diarizer


@dataclass(frozen=True)
class TranscriptionPlan:
    audio: np.ndarray
    analysis: SpeechAnalysis
    segments: list[Segment]
    speakers: list[str | None]  # one per segment; None when speakers were not asked for
    diarization_method: str | None = None

    @property
    def duration(self) -> float:
        return self.audio.size / SAMPLING_RATE

    @property
    def clips(self) -> list[np.ndarray]:
        return [self.audio[segment.start : segment.end] for segment in self.segments]


def label_speech_runs(runs: Sequence[Segment], turns: Sequence[SpeakerTurn]) -> list[tuple[Segment, str]]:
    """The speech runs cut at every turn boundary inside them, each piece with the speaker whose turn covers most of
    it (the nearest turn's speaker where none does: a diarizer may miss speech the VAD found)."""
    if not turns:
        return []
    pieces: list[tuple[Segment, str]] = []
    for run in runs:
        inner = {round(t * SAMPLING_RATE) for turn in turns for t in (turn.start, turn.end)}
        bounds = sorted({run.start, run.end} | {b for b in inner if run.start < b < run.end})
        for start, end in zip(bounds[:-1], bounds[1:]):
            speaker = _speaker_of(start / SAMPLING_RATE, end / SAMPLING_RATE, turns)
            if pieces and pieces[-1][1] == speaker and pieces[-1][0].end == start:
                pieces[-1] = (Segment(pieces[-1][0].start, end), speaker)
            else:
                pieces.append((Segment(start, end), speaker))
    return pieces


def _speaker_of(start: float, end: float, turns: Sequence[SpeakerTurn]) -> str:
    overlaps = [min(end, turn.end) - max(start, turn.start) for turn in turns]
    best = int(np.argmax(overlaps))
    if overlaps[best] > 0:
        return turns[best].speaker
    middle = (start + end) / 2
    return min(turns, key=lambda turn: min(abs(middle - turn.start), abs(middle - turn.end))).speaker


def speaker_segments(
    pieces: Sequence[tuple[Segment, str]], max_segment_s: float, merge_gap_s: float
) -> list[tuple[Segment, str]]:
    """Consecutive pieces of one speaker merged into model segments as plain transcription merges speech runs."""
    segments: list[tuple[Segment, str]] = []
    block: list[Segment] = []
    for index, (piece, speaker) in enumerate(pieces):
        block.append(piece)
        if index + 1 == len(pieces) or pieces[index + 1][1] != speaker:
            segments.extend((segment, speaker) for segment in merge_speech_runs(block, max_segment_s, merge_gap_s))
            block = []
    return segments


def plan_transcription(
    audio: np.ndarray,
    segmenter: SpeechSegmenter,
    diarizer: Diarizer | None = None,
    num_speakers: int | None = None,
) -> TranscriptionPlan:
    """VAD, then (with a diarizer) speakers; the segments respect the segmenter's length and merge settings."""
    analysis = segmenter.analyse(audio)
    if diarizer is None:
        return TranscriptionPlan(audio, analysis, analysis.segments, [None] * len(analysis.segments))
    speech = [(run.start_s, run.end_s) for run in analysis.runs]
    turns = diarizer(audio, speech, num_speakers)
    labelled = speaker_segments(
        label_speech_runs(analysis.runs, turns), segmenter.max_segment_s, segmenter.merge_gap_s
    )
    return TranscriptionPlan(
        audio, analysis, [segment for segment, _ in labelled], [speaker for _, speaker in labelled], diarizer.name
    )


def timed_texts(plan: TranscriptionPlan, transcripts: Sequence[str | SegmentTranscript]) -> list[TimedText]:
    timed = []
    for segment, speaker, result in zip(plan.segments, plan.speakers, transcripts):
        transcript = as_segment_transcript(result)
        timed.append(
            TimedText(
                segment.start_s,
                segment.end_s,
                transcript.text,
                speaker=speaker,
                tokens=transcript.tokens,
                avg_logprob=transcript.avg_logprob,
                no_speech_prob=plan.analysis.no_speech_probability(segment.start, segment.end),
            )
        )
    return timed


def transcribe_with_speakers(
    audio: np.ndarray,
    transcriber: Transcriber,
    *,
    diarizer: Diarizer | str | None = "mfcc",
    num_speakers: int | None = None,
    segmenter: SpeechSegmenter | None = None,
    options: DecodingOptions = DecodingOptions(language="en"),
) -> list[TimedText]:
    """16 kHz mono audio -> timed, tagged segments, each with its ``speaker`` ("Speaker 1" ...; None when
    ``diarizer`` is None), in one synchronous call (no server, no batching)."""
    if isinstance(diarizer, str):
        diarizer = load_diarizer(diarizer)
    plan = plan_transcription(audio, segmenter or SpeechSegmenter(), diarizer, num_speakers)
    transcripts = transcriber(plan.clips, options) if plan.segments else []
    return timed_texts(plan, transcripts)


class LazyDiarizer:
    """The server's diarizer, loaded on the first request that asks for speakers (pyannote loads for seconds and
    may be missing: a request that needs it then gets a clear 503, the rest of the API is unaffected)."""

    def __init__(self, name: str, max_speakers: int = 8):
        self.name = name
        self.max_speakers = max_speakers
        self._diarizer: Diarizer | None = None
        self._lock = threading.Lock()

    def get(self) -> Diarizer:
        with self._lock:
            if self._diarizer is None:
                self._diarizer = load_diarizer(self.name, max_speakers=self.max_speakers)
            return self._diarizer
