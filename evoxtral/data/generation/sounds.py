"""Non-verbal sounds for the offline backend, synthesised once and spliced into speech with SSML ``<audio>``.

Each recipe builds a short clip from espeak-ng syllables (a laugh is "ha ha ha" high and fast with breath mixed
in) and band-limited noise shaped with numpy (a sigh is a falling breath, applause is many random claps).
Recipes are seeded, so the same version always produces the same clip; bump ``RECIPE_VERSION`` when one
changes, which also changes every clip key of the offline backend.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from evoxtral.data.audio import load_audio
from evoxtral.data.generation.files import write_atomic

ESPEAK_SAMPLING_RATE = 22_050  # every espeak-ng (non-MBROLA) voice; spliced clips must match it
RECIPE_VERSION = 1
SR = ESPEAK_SAMPLING_RATE

Speak = Callable[[str], bytes]  # SSML -> WAV bytes


def _noise(rng: np.random.Generator, seconds: float, low_hz: float, high_hz: float) -> np.ndarray:
    """White noise kept between two frequencies, peak-normalised."""
    n = int(seconds * SR)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    signal = np.fft.irfft(spectrum, n)
    return signal / (np.max(np.abs(signal)) + 1e-9)


def _envelope(n: int, attack: float, release: float) -> np.ndarray:
    """Rise over the first ``attack`` share of the clip, fall over the last ``release`` share."""
    t = np.linspace(0, 1, n, endpoint=False)
    rise = np.clip(t / max(attack, 1e-6), 0, 1)
    fall = np.clip((1 - t) / max(release, 1e-6), 0, 1)
    return rise * fall


def _gap(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR))


def _syllables(speak: Speak, text: str, **prosody: str) -> np.ndarray:
    attributes = " ".join(f'{key}="{value}"' for key, value in prosody.items())
    audio = load_audio(speak(f"<speak><prosody {attributes}>{text}</prosody></speak>"), sampling_rate=SR)
    voiced = np.flatnonzero(np.abs(audio) > 0.02)  # trim espeak-ng's leading and trailing silence
    return audio[voiced[0] : voiced[-1] + 1] if voiced.size else audio


def _breath(rng, seconds, low_hz, high_hz, attack, release, level=1.0) -> np.ndarray:
    noise = _noise(rng, seconds, low_hz, high_hz)
    return level * noise * _envelope(noise.size, attack, release)


def _clap(rng: np.random.Generator) -> np.ndarray:
    burst = _noise(rng, 0.03, 800, 5000)
    return burst * np.exp(-np.linspace(0, 8, burst.size))


def _mix_at(canvas: np.ndarray, clip: np.ndarray, start: int) -> None:
    end = min(canvas.size, start + clip.size)
    canvas[start:end] += clip[: end - start]


def _laugh(speak, rng, syllables="ha ha ha ha", pitch="+60%", rate="170%", volume="100%"):
    voice = _syllables(speak, syllables, pitch=pitch, rate=rate, volume=volume, range="150%")
    voice = voice * np.linspace(1.0, 0.6, voice.size)
    return voice + 0.08 * _breath(rng, voice.size / SR, 600, 4000, 0.05, 0.3)


def _applause(speak, rng, seconds=2.0, claps_per_second=25):
    canvas = np.zeros(int(seconds * SR))
    for start in rng.uniform(0, seconds - 0.05, int(seconds * claps_per_second)):
        _mix_at(canvas, _clap(rng) * rng.uniform(0.4, 1.0), int(start * SR))
    return canvas * _envelope(canvas.size, 0.1, 0.3)


def _clapping(speak, rng, claps=6, spacing_s=0.35):
    canvas = np.zeros(int((claps * spacing_s + 0.1) * SR))
    for i in range(claps):
        _mix_at(canvas, _clap(rng), int(i * spacing_s * SR))
    return canvas


def _wheeze(speak, rng, pulses=4):
    parts = []
    for _ in range(pulses):
        n = int(0.3 * SR)
        whistle = np.sin(2 * np.pi * rng.uniform(1000, 1400) * np.arange(n) / SR)
        squeak = 0.5 * _noise(rng, 0.3, 2500, 6000) + 0.4 * whistle
        parts += [squeak * _envelope(n, 0.3, 0.5), _gap(0.1)]
    return np.concatenate(parts)


def _crying(speak, rng):
    sob = _syllables(speak, "uh huh huh huh", pitch="-15%", rate="80%", range="180%")
    tremolo = 0.6 + 0.4 * np.sin(2 * np.pi * 7 * np.arange(sob.size) / SR)
    return sob * tremolo + 0.1 * _breath(rng, sob.size / SR, 400, 3000, 0.1, 0.3)


def _throat(speak, rng):
    rumble = _breath(rng, 0.2, 100, 700, 0.2, 0.5)
    return np.concatenate([rumble, _syllables(speak, "ahem", pitch="-40%", rate="90%")])


def _gulp(speak, rng):
    n = int(0.12 * SR)
    thump = np.sin(2 * np.pi * 180 * np.arange(n) / SR) * np.exp(-np.linspace(0, 6, n))
    return np.concatenate([thump + 0.3 * _breath(rng, 0.12, 100, 400, 0.1, 0.5), _gap(0.05), 0.6 * thump])


SOUND_RECIPES: dict[str, Callable[[Speak, np.random.Generator], np.ndarray]] = {
    "laughs": _laugh,
    "laughs harder": lambda speak, rng: _laugh(speak, rng, "ha ha ha ha ha ha ha", "+80%", "190%", "150%"),
    "starts laughing": lambda speak, rng: np.concatenate(
        [_laugh(speak, rng, "heh heh", "+30%", "150%", "60%"), _gap(0.15), _laugh(speak, rng)]
    ),
    "wheezing": _wheeze,
    "sighs": lambda speak, rng: np.concatenate(
        [_breath(rng, 0.35, 1000, 4000, 0.6, 0.2, 0.4), _breath(rng, 1.1, 250, 2000, 0.15, 0.8)]
    ),
    "exhales": lambda speak, rng: _breath(rng, 0.7, 200, 1500, 0.1, 0.7),
    "gasps": lambda speak, rng: _breath(rng, 0.35, 1000, 5000, 0.8, 0.05),
    "clears throat": _throat,
    "crying": _crying,
    "snorts": lambda speak, rng: np.concatenate(
        [_breath(rng, 0.1, 80, 700, 0.1, 0.4), _gap(0.05), _breath(rng, 0.12, 80, 700, 0.1, 0.4)]
    ),
    "gulps": _gulp,
    "applause": _applause,
    "clapping": _clapping,
}


def sound_path(name: str, directory: Path) -> Path:
    return directory / f"{name.replace(' ', '_')}-v{RECIPE_VERSION}.wav"


def build_sound_clips(names: list[str], directory: Path, speak: Speak) -> dict[str, Path]:
    """Synthesise each named sound once into ``directory`` (kept across runs) and return their absolute paths:
    espeak-ng silently leaves out an ``<audio src>`` given relative to the working directory."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names:
        path = sound_path(name, directory)
        if not path.exists():
            rng = np.random.default_rng(list(name.encode()) + [RECIPE_VERSION])
            clip = SOUND_RECIPES[name](speak, rng)
            clip = 0.5 * clip / (np.max(np.abs(clip)) + 1e-9)
            buffer = io.BytesIO()
            sf.write(buffer, clip.astype(np.float32), SR, subtype="PCM_16", format="WAV")
            write_atomic(path, buffer.getvalue())
        paths[name] = path
    return paths
