"""Dialogue clips with known speaker turns, spoken by espeak-ng voices: what the diarization tests and the
diarization bench measure against (nothing downloaded, the same voices the offline data generator uses)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evoxtral.data.audio import SAMPLING_RATE, load_audio
from evoxtral.data.generation.espeak import run_espeak


@dataclass(frozen=True)
class SpokenTurn:
    speaker: str  # the espeak-ng voice that spoke it
    start: float  # seconds in the dialogue
    end: float


def espeak_dialogue(
    turns: Sequence[tuple[str, str]], gap_s: float = 0.8, edge_s: float = 0.3
) -> tuple[np.ndarray, list[SpokenTurn]]:
    """(voice, sentence) pairs spoken in order with ``gap_s`` of silence between turns: 16 kHz mono audio and
    where each turn's speech starts and ends (espeak-ng's own leading and trailing silence trimmed)."""
    pieces = [np.zeros(int(edge_s * SAMPLING_RATE), np.float32)]
    spoken = []
    cursor = len(pieces[0])
    for index, (voice, sentence) in enumerate(turns):
        speech = _trimmed(load_audio(run_espeak(f"<speak>{sentence}</speak>", voice)))
        if index:
            pieces.append(np.zeros(int(gap_s * SAMPLING_RATE), np.float32))
            cursor += len(pieces[-1])
        pieces.append(speech)
        spoken.append(SpokenTurn(voice, cursor / SAMPLING_RATE, (cursor + len(speech)) / SAMPLING_RATE))
        cursor += len(speech)
    pieces.append(np.zeros(int(edge_s * SAMPLING_RATE), np.float32))
    return np.concatenate(pieces), spoken


def _trimmed(audio: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > floor)
    return audio[loud[0] : loud[-1] + 1] if loud.size else audio
