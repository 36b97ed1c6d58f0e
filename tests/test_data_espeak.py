import shutil
from pathlib import Path

import numpy as np
import pytest

from evoxtral.data.generation.backends import AudioCheck, SynthesisError, SynthesisRequest, decode_and_check
from evoxtral.data.generation.espeak import EspeakBackend, build_renderings, rendering_table, script_to_ssml
from evoxtral.data.generation.slices import is_scoped
from evoxtral.scoring import tags as vocab

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (make system-deps)")

WORDS = "apple river stone table garden pencil."
README = Path(__file__).resolve().parents[1] / "data_gen" / "README.md"


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return EspeakBackend(sounds_dir=tmp_path_factory.mktemp("sounds"), render_overrides={"pause": {"break_ms": 1500}})


def _speak(backend, text):
    return decode_and_check(backend.synthesize(SynthesisRequest(text, "en-us+m3")), AudioCheck())


def _features(audio):
    frames = audio[: audio.size // 400 * 400].reshape(-1, 400)  # 25 ms frames at 16 kHz
    energy = np.sqrt((frames**2).mean(axis=1))
    voiced = energy > 0.02
    crossings = (np.abs(np.diff(np.sign(frames), axis=1)) > 0).mean(axis=1)
    longest_gap = max(len(run) for run in "".join("s" if v else "-" for v in voiced).split("s"))
    return {
        "duration": audio.size / 16000,
        "loudness": float(energy[voiced].mean()),
        "noisiness": float(crossings[voiced].mean()),
        "longest_gap": longest_gap * 0.025,
    }


def test_every_vocabulary_tag_changes_the_audio(backend):
    plain = _speak(backend, WORDS)
    for name in vocab.VOCABULARY:
        text = f"[{name}] {WORDS}" if is_scoped(name) else f"apple river stone [{name}] table garden pencil."
        audio = _speak(backend, text)
        same_length = audio.size == plain.size
        assert not (same_length and np.allclose(audio, plain, atol=1e-3)), f"[{name}] made no audible difference"


def test_sounds_are_spliced_when_their_folder_is_a_relative_path(tmp_path, monkeypatch):
    """make demo and make data keep sounds under outputs/ (relative): espeak-ng drops an <audio> it cannot find
    without a word, so a relative path silently gave clips without their [laughs] and [sighs]."""
    monkeypatch.chdir(tmp_path)
    backend = EspeakBackend(sounds_dir="outputs/cache/sounds")
    sigh = decode_and_check(backend.sound_paths["sighs"].read_bytes(), AudioCheck())
    plain = _speak(backend, "apple river stone. table garden pencil.")
    sighing = _speak(backend, "apple river stone. [sighs] table garden pencil.")
    assert sighing.size - plain.size > 0.8 * sigh.size


def test_learning_check_tags_are_acoustically_distinct(backend):
    plain = _features(_speak(backend, WORDS))
    whispers = _features(_speak(backend, f"[whispers] {WORDS}"))
    shouts = _features(_speak(backend, f"[shouts] {WORDS}"))
    sad = _features(_speak(backend, f"[sad] {WORDS}"))
    excited = _features(_speak(backend, f"[excited] {WORDS}"))
    pause = _features(_speak(backend, "apple river stone. [pause] table garden pencil."))
    two_sentences = _features(_speak(backend, "apple river stone. table garden pencil."))
    laughs = _speak(backend, "apple river stone. [laughs] table garden pencil.")
    assert whispers["noisiness"] > 1.3 * plain["noisiness"] and whispers["loudness"] < plain["loudness"]
    assert shouts["loudness"] > 1.5 * plain["loudness"] and shouts["duration"] < plain["duration"]
    assert sad["duration"] > 1.2 * plain["duration"] and sad["loudness"] < plain["loudness"]
    assert excited["duration"] < 0.85 * plain["duration"] and excited["loudness"] < shouts["loudness"]
    # a pause must stand out from the gap a sentence end leaves
    assert pause["longest_gap"] >= 1.4 and pause["longest_gap"] > 3 * two_sentences["longest_gap"]
    assert laughs.size / 16000 > two_sentences["duration"] + 0.4


def test_back_to_back_scoped_tags_combine_and_sentence_ends_reset(backend):
    ssml = script_to_ssml("[sad] [whispers] one two. three four.", "en-us+f2", backend.renderings, backend.sound_paths)
    assert ssml.count('<voice name="en-us+whisper">') == 1
    assert "three four.</speak>" in ssml.replace(" </speak>", "</speak>")  # after the full stop: plain voice
    stammer = script_to_ssml("[stammers] Maybe we could go.", "en-us", backend.renderings, backend.sound_paths)
    assert "may<break" in stammer and "co<break" not in stammer  # the first two words only


def test_a_tag_without_rendering_is_an_error_not_silence(backend):
    renderings = dict(backend.renderings, sighs=None)
    with pytest.raises(SynthesisError, match="no rendering for \\[sighs\\]"):
        script_to_ssml("Well [sighs] fine.", "en-us", renderings, backend.sound_paths)
    with pytest.raises(SynthesisError, match="no rendering"):
        script_to_ssml("[strong accent] fine.", "en-us", renderings, backend.sound_paths)
    # a user's own script may carry any v3 tag: left unvoiced on request, a vocabulary tag without rendering still fails
    ssml = script_to_ssml("[strong accent] fine.", "en-us", renderings, backend.sound_paths, skip_unknown_tags=True)
    assert "accent" not in ssml and "fine." in ssml
    with pytest.raises(SynthesisError, match="no rendering for \\[sighs\\]"):
        script_to_ssml("Well [sighs] fine.", "en-us", renderings, backend.sound_paths, skip_unknown_tags=True)


def test_render_overrides_are_checked():
    assert build_renderings({"pause": {"break_ms": 1500}})["pause"].break_ms == 1500
    with pytest.raises(ValueError, match="not a vocabulary tag"):
        build_renderings({"yodels": {"rate": 2.0}})
    with pytest.raises(ValueError, match="unknown fields"):
        build_renderings({"pause": {"tempo": 2.0}})


def test_readme_documents_the_rendering_table():
    assert rendering_table() in README.read_text(encoding="utf-8")


def test_same_script_gives_the_same_audio_on_a_busy_machine(backend):
    from concurrent.futures import ThreadPoolExecutor

    text = (
        "[excited] Our team grew by a HUNDRED people this year. [stammers] Let me walk you through the next steps. "
        "[whispers] If there are no questions, I'll move on [sighs] to the [clears throat] budget. [angry] This "
        "is the result we are most [laughs] proud of."
    )
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(lambda _: backend.synthesize(SynthesisRequest(text, "en+m1")), range(8)))
    assert len(set(outputs)) == 1
