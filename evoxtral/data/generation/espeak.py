"""The offline speech backend: espeak-ng (Debian) reading SSML, every vocabulary tag rendered audibly.

How a tag sounds follows from its vocabulary entry (``evoxtral.scoring.tags.VOCABULARY``):

* emotions change prosody, derived from the tag's valence and arousal (aroused -> faster, louder, wider pitch;
  unpleasant -> lower, slower), for the words up to the end of the sentence or the next scoped tag;
* delivery tags have their own rendering: whispers use espeak-ng's whisper voice, shouts are loud, high and
  fast, stammers repeat the first syllables, sings is a slow sing-song;
* pauses are SSML breaks of a set length;
* reactions and sound effects are short clips synthesised once (espeak-ng syllables and shaped noise, see
  ``evoxtral.data.generation.sounds``) and spliced in with ``<audio src>``.

A tag with no rendering is reported (the clip fails with the reason), never silently dropped; the table in
data_gen/README.md is ``rendering_table()``'s output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from evoxtral.data.generation.backends import SynthesisError, SynthesisRequest
from evoxtral.data.generation.slices import is_scoped
from evoxtral.data.generation.sounds import SOUND_RECIPES, build_sound_clips
from evoxtral.scoring import tags as vocab

DEFAULT_VOICES = ["en-us+m3", "en-us+f2", "en+m1", "en-gb+f4", "en-us+m7", "en+f3"]


@dataclass(frozen=True)
class TagRendering:
    """How espeak-ng voices one tag. Scoped kinds ("prosody", "whisper", "stammer") colour the words after them."""

    kind: str  # "prosody" | "whisper" | "stammer" | "break" | "sound"
    rate: float = 1.0  # multipliers of espeak-ng's defaults
    volume: float = 1.0
    pitch_range: float = 1.0
    pitch_shift: float = 0.0  # percent
    break_ms: int = 0
    sound: str = ""  # a recipe in evoxtral.data.generation.sounds
    stammer_words: int = 2

    def describe(self) -> str:
        if self.kind == "break":
            return f"SSML break of {self.break_ms} ms"
        if self.kind == "sound":
            return f"spliced clip `{self.sound}` (evoxtral/data/generation/sounds.py)"
        prosody = f"rate x{self.rate:.2f}, volume x{self.volume:.2f}, pitch {self.pitch_shift:+.0f}%, range x{self.pitch_range:.2f}"
        if self.kind == "whisper":
            return f"whisper voice variant, {prosody}"
        if self.kind == "stammer":
            return f"first syllable of the next {self.stammer_words} words repeated twice, {prosody}"
        return prosody


def emotion_prosody(info: vocab.TagInfo) -> TagRendering:
    """Prosody from the tag's valence (-1..1) and arousal (0..1)."""
    arousal = info.arousal - 0.5
    return TagRendering(
        "prosody",
        rate=round(1.0 + 0.7 * arousal + 0.2 * info.valence, 2),
        volume=round(1.0 + 0.8 * arousal, 2),
        pitch_range=round(max(0.3, 1.0 + 1.5 * arousal + 0.3 * info.valence), 2),
        pitch_shift=round(25 * info.valence + 30 * arousal),
    )


DELIVERY_RENDERINGS = {
    "whispers": TagRendering("whisper", rate=0.95),
    "shouts": TagRendering("prosody", rate=1.15, volume=1.9, pitch_range=0.7, pitch_shift=35),
    "stammers": TagRendering("stammer", rate=0.95),
    "sings": TagRendering("prosody", rate=0.75, volume=1.1, pitch_range=2.5, pitch_shift=20),
}
PAUSE_MS = {"short pause": 400, "pause": 900, "long pause": 1800}


def default_rendering(name: str) -> TagRendering | None:
    """The rendering a vocabulary tag gets unless a config overrides it; None when espeak-ng cannot voice it."""
    info = vocab.VOCABULARY[name]
    if info.category == vocab.EMOTION:
        return emotion_prosody(info)
    if info.category == vocab.DELIVERY:
        return DELIVERY_RENDERINGS.get(name)
    if info.category == vocab.PAUSE:
        return TagRendering("break", break_ms=PAUSE_MS[name]) if name in PAUSE_MS else None
    return TagRendering("sound", sound=name) if name in SOUND_RECIPES else None


def build_renderings(overrides: dict[str, dict] | None = None) -> dict[str, TagRendering | None]:
    """Every vocabulary tag's rendering, with per-tag field overrides (e.g. {"pause": {"break_ms": 1500}})."""
    renderings = {name: default_rendering(name) for name in vocab.VOCABULARY}
    for raw, fields in (overrides or {}).items():
        tag = vocab.canonical_tag(raw)
        if not tag.known:
            raise ValueError(f"render override for {raw!r}, which is not a vocabulary tag")
        base = renderings[tag.name] or TagRendering(fields.get("kind", "prosody"))
        unknown = set(fields) - set(asdict(base))
        if unknown:
            raise ValueError(f"render override for {raw!r} has unknown fields {sorted(unknown)}")
        renderings[tag.name] = replace(base, **fields)
    return renderings


def rendering_table(renderings: dict[str, TagRendering | None] | None = None) -> str:
    """The markdown table of how each tag is voiced (data_gen/README.md carries this output)."""
    renderings = renderings or build_renderings()
    rows = ["| tag | category | espeak-ng rendering |", "| --- | --- | --- |"]
    for name, rendering in renderings.items():
        how = rendering.describe() if rendering else "**unsupported**: clips with this tag are rejected"
        rows.append(f"| `[{name}]` | {vocab.VOCABULARY[name].category} | {how} |")
    return "\n".join(rows)


_WORD_END = re.compile(r"[.!?][\"')\]]*$")
_SYLLABLE = re.compile(r"^[^aeiouy]*[aeiouy]+", re.IGNORECASE)


def _ends_sentence(word: str) -> bool:
    return bool(_WORD_END.search(word)) and not word.rstrip("\"')]").endswith(("..", "…"))


def _whisper_voice(voice: str) -> str:
    return voice.split("+", 1)[0] + "+whisper"


@dataclass(frozen=True)
class _Style:
    rate: float = 1.0
    volume: float = 1.0
    pitch_range: float = 1.0
    pitch_shift: float = 0.0
    whisper: bool = False

    def add(self, rendering: TagRendering) -> _Style:
        return _Style(
            self.rate * rendering.rate,
            self.volume * rendering.volume,
            self.pitch_range * rendering.pitch_range,
            self.pitch_shift + rendering.pitch_shift,
            self.whisper or rendering.kind == "whisper",
        )

    def wrap(self, ssml: str, voice: str) -> str:
        if self == _Style():
            return ssml
        ssml = (
            f'<prosody rate="{self.rate:.0%}" volume="{self.volume:.0%}" range="{self.pitch_range:.0%}" '
            f'pitch="{self.pitch_shift:+.0f}%">{ssml}</prosody>'
        )
        return f"<voice name={quoteattr(_whisper_voice(voice))}>{ssml}</voice>" if self.whisper else ssml


def _speak_word(word: str, stammer: bool) -> str:
    spoken = escape(word.lower()) if vocab.is_emphasis_word(re.sub(r"[^\w'’]", "", word)) else escape(word)
    if vocab.is_emphasis_word(re.sub(r"[^\w'’]", "", word)):
        spoken = f"<emphasis>{spoken}</emphasis>"
    syllable = _SYLLABLE.match(re.sub(r"[^A-Za-z]", "", word))
    if stammer and syllable and len(syllable.group()) < len(re.sub(r"[^A-Za-z]", "", word)):
        start = escape(syllable.group().lower())
        return f'{start}<break time="120ms"/> {start}<break time="120ms"/> {spoken}'
    return spoken


def script_to_ssml(
    text: str,
    voice: str,
    renderings: dict[str, TagRendering | None],
    sound_paths: dict[str, Path],
    *,
    skip_unknown_tags: bool = False,
) -> str:
    """The SSML espeak-ng reads for one tagged script. Raises SynthesisError for a tag it cannot voice.

    skip_unknown_tags: a tag outside the vocabulary (a user's own script may carry any ElevenLabs v3 tag) is left
    unvoiced instead of failing the clip; the tag stays in the clip's text and the run reports it.
    """
    pieces: list[str] = []
    group: list[str] = []  # words sharing the current style, wrapped together
    style, words_since_scoped, stammer_left = _Style(), 0, 0

    def flush():
        if group:
            pieces.append(style.wrap(" ".join(group), voice))
            group.clear()

    cursor = 0
    for span in [*vocab.extract_tags(text), None]:
        chunk = text[cursor : span.start if span else len(text)]
        for word in chunk.split():
            group.append(_speak_word(word, stammer_left > 0))
            stammer_left = max(0, stammer_left - 1)
            words_since_scoped += 1
            if _ends_sentence(word):
                flush()
                style = _Style()
        if span is None:
            break
        cursor = span.end
        if skip_unknown_tags and not span.known:
            continue
        rendering = renderings.get(span.name) if span.known else None
        if rendering is None:
            raise SynthesisError(f"espeak-ng has no rendering for [{span.raw}]")
        if is_scoped(span.name):
            flush()
            # back-to-back scoped tags combine; a scoped tag after speech starts a new style
            style = (style if words_since_scoped == 0 else _Style()).add(rendering)
            words_since_scoped = 0
            stammer_left = rendering.stammer_words if rendering.kind == "stammer" else stammer_left
        elif rendering.kind == "break":
            flush()
            pieces.append(f'<break time="{rendering.break_ms}ms"/>')
        else:
            flush()
            pieces.append(f"<audio src={quoteattr(str(sound_paths[rendering.sound]))}></audio>")
    flush()
    return "<speak>" + " ".join(pieces) + "</speak>"


def espeak_executable() -> str:
    found = shutil.which(os.environ.get("ESPEAK_NG", "espeak-ng"))
    if not found:
        raise SynthesisError("espeak-ng is not installed: run `make system-deps` (Debian package espeak-ng)")
    return found


def run_espeak(ssml: str, voice: str, timeout_s: float = 60.0) -> bytes:
    """One espeak-ng call: SSML in, WAV bytes out.

    The SSML goes on the command line, not stdin: espeak-ng starts speaking whatever part of a piped input has
    arrived, so on a busy machine the same script could come out cut differently.
    """
    command = [espeak_executable(), "-m", "-v", voice, "--stdout", ssml]
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        raise SynthesisError(f"espeak-ng timed out after {timeout_s:.0f} s") from error
    message = result.stderr.decode("utf-8", "replace").strip()
    if result.returncode != 0 or message.startswith("Error"):
        raise SynthesisError(f"espeak-ng failed for voice {voice!r}: {message or f'exit code {result.returncode}'}")
    return result.stdout


class EspeakBackend:
    """Offline speech: no key, no network. Voices are espeak-ng voice+variant names."""

    name = "espeak-ng"

    def __init__(
        self,
        voices: list[str] | None = None,
        sounds_dir: str | Path = "outputs/cache/sounds",
        render_overrides: dict[str, dict] | None = None,
        concurrency: int = 2,
        skip_unknown_tags: bool = False,
    ):
        self.voices = list(voices or DEFAULT_VOICES)
        self.skip_unknown_tags = skip_unknown_tags
        self.concurrency = concurrency
        self.renderings = build_renderings(render_overrides)
        needed = sorted({r.sound for r in self.renderings.values() if r and r.kind == "sound"})
        self.sound_paths = build_sound_clips(needed, Path(sounds_dir), speak=self.speak)

    @staticmethod
    def speak(ssml: str, voice: str = DEFAULT_VOICES[0]) -> bytes:
        return run_espeak(ssml, voice)

    def settings(self) -> dict:
        settings = {
            "renderings": {name: r and asdict(r) for name, r in self.renderings.items()},
            "sounds": {name: path.name for name, path in self.sound_paths.items()},
        }
        if self.skip_unknown_tags:  # only when set, so the clip keys of existing stores stay valid
            settings["skip_unknown_tags"] = True
        return settings

    def synthesize(self, request: SynthesisRequest) -> bytes:
        return run_espeak(
            script_to_ssml(
                request.text,
                request.voice,
                self.renderings,
                self.sound_paths,
                skip_unknown_tags=self.skip_unknown_tags,
            ),
            request.voice,
        )
