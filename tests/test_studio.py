"""The studio (evoxtral/studio): its views of a transcript, its edits and exports, the engine over the server's own
pipeline, the named API through the real gradio_client, and the page itself in headless Chromium.

Most tests use a scripted transcriber whose output carries tags of every category, so what the studio does with
tags is checked exactly; the gradio_client test runs the built-in tiny Voxtral.
"""

import html
import os
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import encode

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from evoxtral.scoring.tags import emphasis_words  # noqa: E402
from evoxtral.serving.pipeline import transcribe_with_speakers  # noqa: E402
from evoxtral.serving.results import TimedText, full_text, native_result, srt, vtt  # noqa: E402
from evoxtral.serving.settings import ServeSettings  # noqa: E402
from evoxtral.studio.engine import StudioEngine, StudioInputError  # noqa: E402
from evoxtral.studio.export import (  # noqa: E402
    EditError,
    elevenlabs_v3_text,
    export_text,
    rows_to_segments,
    segments_to_rows,
)
from evoxtral.studio.render import tag_count_rows, timeline_html, transcript_html  # noqa: E402

SPEECH = Path(__file__).parent / "data" / "speech.ogg"  # two espeak-ng phrases, 7.47 s (see test_serving_api.py)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def scripted_transcriber(clips, options):
    """Tagged text of every category that says how long each clip was, so segments can be told apart."""
    return [
        f"[nervous] Clip of {len(clip) / 16000:.1f} SECONDS [laughs nervously] ok [short pause] [zzz]"
        for clip in clips
    ]


@pytest.fixture(scope="module")
def engine():
    return StudioEngine(ServeSettings(), {"model": scripted_transcriber})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_hour_flac(tmp_path_factory) -> Path:
    """Two hours of 8 kHz silence as FLAC (180 KB): refused from its header, long before anything decodes it."""
    path = tmp_path_factory.mktemp("long") / "two_hours.flac"
    with sf.SoundFile(path, "w", 8000, 1, format="FLAC", subtype="PCM_16") as sound:
        block = np.zeros(8000 * 600, np.int16)
        for _ in range(12):
            sound.write(block)
    return path


@pytest.fixture(scope="module")
def fer_export(tmp_path_factory) -> Path:
    """A real ONNX facial-emotion folder (model.onnx, config.json, preprocessor_config.json) of a random MobileViT-XXS
    with calibrated BatchNorm, exported with torch's own exporter: the project's Optimum export needs its own
    environment (recipes/fer_onnx.py), and FerClassifier reads either."""
    import torch

    from evoxtral.fer.model import build_fer_model, build_image_processor, calibrate_batchnorm

    folder = tmp_path_factory.mktemp("fer-onnx")
    torch.manual_seed(0)
    model = build_fer_model(None)
    calibrate_batchnorm(model, [torch.randn(4, 3, 256, 256) for _ in range(2)])
    model.eval()
    torch.onnx.export(
        model, (torch.randn(1, 3, 256, 256),), str(folder / "model.onnx"), input_names=["pixel_values"],
        output_names=["logits"], dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
    )  # fmt: skip
    model.config.save_pretrained(folder)
    build_image_processor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def face_png(tmp_path_factory) -> Path:
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("face") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


# --- Views ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["I DON'T want the TV, OK? It's SO good.", "[SHOUTS] NO[laughs]WAY", "ÉNORME et Énorme [pause] USA YES"]
)
def test_emphasis_spans_mark_exactly_the_words_emphasis_words_finds(text):
    from evoxtral.scoring.tags import emphasis_spans

    assert [text[a:b].lower() for a, b in emphasis_spans(text)] == emphasis_words(text)


def chips(page: str) -> list[tuple[str, str, str]]:
    """(category, canonical tag, text shown) of every tag chip in the transcript part of a page."""
    body = page.split("</div>", 1)[1]  # after the legend
    found = re.findall(r'class="evx-tag evx-cat-(\w+)" data-tag="([^"]*)"[^>]*>([^<]*)</span>', body)
    return [(category, html.unescape(tag), html.unescape(shown)) for category, tag, shown in found]


def test_transcript_colours_every_tag_by_its_category_and_bolds_emphasis():
    text = "[nervous] I REALLY [laughs nervously] think [whispering] OK [short pause] [applause] [zzz] <b>x</b>"
    page = transcript_html([TimedText(0, 1, text, speaker="Speaker 2")])
    assert chips(page) == [
        ("emotion", "nervous", "[nervous]"),
        ("reaction", "laughs", "[laughs nervously]"),
        ("delivery", "whispers", "[whispering]"),
        ("pause", "short pause", "[short pause]"),
        ("sound_effect", "applause", "[applause]"),
        ("unknown", "zzz", "[zzz]"),
    ]
    assert re.findall(r'<strong class="evx-emphasis">(\w+)</strong>', page.split("</div>", 1)[1]) == ["REALLY"]
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page  # transcript text is escaped
    assert '<span class="evx-speaker">Speaker 2:</span> ' in page


def test_no_speech_says_so():
    assert "No speech was found" in transcript_html([])


def test_tag_counts_are_per_canonical_tag_with_category_most_frequent_first():
    segments = [TimedText(0, 1, "[laughs] a [laughing] b [sighs]"), TimedText(1, 2, "[laughs harder] [zzz] c")]
    assert tag_count_rows(segments) == [
        ["laughs", "reaction", 2],
        ["sighs", "reaction", 1],
        ["laughs harder", "reaction", 1],
        ["zzz", "not in the vocabulary", 1],
    ]


def test_timeline_places_each_segment_by_its_times_with_its_emotion_and_speaker():
    audio = np.zeros(10 * 16000, np.float32)
    audio[16000:32000] = 0.5
    segments = [TimedText(1.0, 3.5, "[angry] no", speaker="Speaker 1"), TimedText(6.0, 10.0, "fine", "Speaker 2")]
    page = timeline_html(audio, segments)
    blocks = re.findall(
        r'class="evx-segment" data-index="(\d)" data-emotion="(\w+)" data-speaker="([^"]*)".*?'
        r"left:([\d.]+)%;width:([\d.]+)%",
        page,
    )
    assert blocks == [
        ("0", "anger", "Speaker 1", "10.000", "25.000"),
        ("1", "neutral", "Speaker 2", "60.000", "40.000"),
    ]
    # The waveform: a bar per bin, full height where the signal is and flat where it is silent.
    bars = re.findall(r"M(\d+) ([\d.]+)V([\d.]+)", page)
    assert len(bars) == 600
    assert bars[90][1:] == ("2.0", "98.0") and bars[300][1:] == ("50.0", "50.0")


# --- Edits and exports ------------------------------------------------------------------------------------------


def test_edited_rows_come_back_as_segments_and_blank_rows_are_dropped():
    segments = [TimedText(0.0, 1.5, "[sighs] hi", speaker="Speaker 1"), TimedText(2.0, 3.0, "there")]
    rows = segments_to_rows(segments)
    assert rows == [[0.0, 1.5, "Speaker 1", "[sighs] hi"], [2.0, 3.0, "", "there"]]
    rows[1][3] = "[laughs] THERE"
    assert rows_to_segments([*rows, ["", "", "", ""]]) == [segments[0], TimedText(2.0, 3.0, "[laughs] THERE")]


@pytest.mark.parametrize(
    "row, message",
    [
        (["a", 1, "", "x"], "Row 1: start must be a number"),
        ([2, 1, "", "x"], "Row 1: end (1 s) is before start (2 s)"),
        ([0, 1, "", "[laughs x"], "Row 1: '[' at 0 is never closed"),
        ([0, 1, "", "x] y"], "Row 1: ']' at 1 closes nothing"),
    ],
)
def test_a_broken_edit_is_refused_with_the_row_and_the_problem(row, message):
    with pytest.raises(EditError, match=re.escape(message)):
        rows_to_segments([row])


def test_subtitle_and_json_exports_are_the_servers_own():
    segments = [TimedText(0.0, 1.5, "[sighs] hi", speaker="Speaker 1"), TimedText(2.0, 3.0, "[laughs] THERE")]
    assert export_text(segments, "srt", 3.0, "en", "m") == srt(segments)
    assert export_text(segments, "vtt", 3.0, "en", "m") == vtt(segments)
    import json

    assert json.loads(export_text(segments, "json", 3.0, "en", "m")) == native_result(segments, 3.0, "en", "m")
    with pytest.raises(ValueError, match="unknown export format"):
        export_text(segments, "docx", 3.0, "en", "m")


def test_elevenlabs_text_uses_canonical_tags_keeps_emphasis_and_joins_turns():
    segments = [
        TimedText(0, 1, "[laughing] So [laughs nervously] I was  THINKING", speaker="Speaker 1"),
        TimedText(1, 2, "[zzz] maybe [] not", speaker="Speaker 1"),
        TimedText(2, 3, "[whispering] okay", speaker="Speaker 2"),
    ]
    assert elevenlabs_v3_text(segments) == (
        "Speaker 1: [laughs] So [laughs nervously] I was THINKING [zzz] maybe not\nSpeaker 2: [whispers] okay\n"
    )
    assert elevenlabs_v3_text([TimedText(0, 1, "[sad] a"), TimedText(1, 2, "b")]) == "[sad] a\nb\n"


# --- The engine: the server's path, and bad input --------------------------------------------------------------


def test_engine_transcribes_the_segments_the_server_would(engine):
    fractions = []
    result = engine.transcribe(SPEECH, progress=lambda fraction, description: fractions.append(fraction))
    audio = engine.decode(SPEECH)
    expected = transcribe_with_speakers(audio, scripted_transcriber, diarizer=None)
    assert [(s.start, s.end, s.text) for s in result.segments] == [(s.start, s.end, s.text) for s in expected]
    assert len(result.segments) == 2 and result.duration == pytest.approx(7.466, abs=0.01)
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_engine_labels_speakers_with_the_servers_diarizer(engine):
    result = engine.transcribe(SPEECH, diarize=True)
    assert result.diarization_method == "mfcc"
    assert all(segment.speaker and segment.speaker.startswith("Speaker ") for segment in result.segments)


def bad_inputs(tmp_path: Path, two_hour_flac: Path) -> dict:
    files = {
        "empty": b"",
        "not audio.wav": b"this is a text file, not a recording " * 20,
        "silent.wav": encode(np.zeros(32000, np.float32), 16000),
        "clip.m4a": b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isomiso2" + bytes(4000),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    return {
        "no file": (None, "No audio: upload a file or record"),
        "empty recording": (paths["empty"], "The uploaded file is empty."),
        "not audio": (paths["not audio.wav"], "could not be decoded as audio: 'not audio.wav' is not a readable"),
        "silent": (paths["silent.wav"], "The audio is silent"),
        "m4a": (paths["clip.m4a"], "'clip.m4a' is MP4/M4A audio, which libsndfile cannot decode: convert it"),
        "two hours": (two_hour_flac, "'two_hours.flac' lasts 7200.0 s, more than the 3600 s allowed"),
    }


@pytest.mark.parametrize("name", ["no file", "empty recording", "not audio", "silent", "m4a", "two hours"])
def test_bad_input_is_a_readable_message_and_the_engine_keeps_working(engine, tmp_path, two_hour_flac, name):
    path, message = bad_inputs(tmp_path, two_hour_flac)[name]
    with pytest.raises(StudioInputError) as error:
        engine.transcribe(path)
    assert message in str(error.value) and str(tmp_path) not in str(error.value)
    assert len(engine.transcribe(SPEECH).segments) == 2


def test_unknown_model_and_language_are_refused(engine):
    with pytest.raises(StudioInputError, match="Unknown model 'other': choose one of model"):
        engine.transcribe(SPEECH, model="other")


def test_facial_emotion_without_a_configured_model_says_how_to_configure_it(engine):
    with pytest.raises(StudioInputError, match="Facial emotion recognition is not configured: set EVOXTRAL_FER_MODEL"):
        engine.classify_face(b"not used", "image/png", "face.png")


def test_facial_emotion_runs_the_configured_onnx_export_on_a_face(fer_export, face_png):
    from evoxtral.fer.model import FER_LABELS

    engine = StudioEngine(ServeSettings(fer_model=str(fer_export)), {"model": scripted_transcriber})
    assert engine.fer_configured
    answer = engine.classify_face(face_png.read_bytes(), "image/png", face_png.name)
    assert answer["kind"] == "image" and answer["face_detected"] is True
    assert answer["emotion"] in FER_LABELS and sum(answer["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(StudioInputError, match="not an image"):
        engine.classify_face(b"plain text, no picture" * 10, "image/png", "x.png")


def test_an_adapter_is_compared_with_its_own_base_on_the_same_segments(tiny_model_and_processor, tmp_path):
    from peft import LoraConfig, get_peft_model

    from evoxtral.model.loading import load_model_and_processor
    from evoxtral.serving.transcriber import model_transcriber
    from evoxtral.studio.engine import model_transcribers

    model, _ = load_model_and_processor("evoxtral-tiny", trainable=True)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)  # non-zero: not a no-op
    get_peft_model(model, lora).save_pretrained(tmp_path)
    settings = ServeSettings(adapter=str(tmp_path), max_new_tokens=8)
    transcribers = model_transcribers(settings)
    assert list(transcribers) == ["model", "base"]
    adapted, base = StudioEngine(settings, transcribers).compare(SPEECH, ("model", "base"))
    plain = StudioEngine(settings, {"model": model_transcriber(*tiny_model_and_processor, 8)}).transcribe(SPEECH)
    assert [(s.start, s.end) for s in adapted.segments] == [(s.start, s.end) for s in base.segments]
    assert [s.text for s in base.segments] == [s.text for s in plain.segments]  # the adapter switched off
    assert [s.text for s in adapted.segments] != [s.text for s in base.segments]


# --- The app: the named API through the real gradio_client, with the tiny Voxtral ------------------------------


@pytest.fixture(scope="module")
def tiny_studio(tiny_model_and_processor, two_hour_flac):
    from evoxtral.serving.transcriber import model_transcriber
    from evoxtral.studio.app import build_studio

    model, processor = tiny_model_and_processor
    tiny_engine = StudioEngine(ServeSettings(max_new_tokens=12), {"model": model_transcriber(model, processor, 12)})
    app = build_studio(tiny_engine)
    _, url, _ = app.queue().launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield tiny_engine, url
    finally:
        app.close()


def test_gradio_client_transcribes_through_the_named_endpoints(tiny_studio, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    tiny_engine, url = tiny_studio
    client = Client(url, verbose=False)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/transcribe", "/transcribe_json"} <= set(endpoints)
    direct = tiny_engine.transcribe(SPEECH)
    assert client.predict(handle_file(str(SPEECH)), "en", api_name="/transcribe") == full_text(direct.segments)
    answer = client.predict(handle_file(str(SPEECH)), "en", False, api_name="/transcribe_json")
    assert answer == native_result(direct.segments, direct.duration, "en", "evoxtral-tiny")
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not a recording " * 50)
    with pytest.raises(AppError, match="'notes.wav' is not a readable audio file"):
        client.predict(handle_file(str(not_audio)), "en", api_name="/transcribe")
    assert client.predict(handle_file(str(SPEECH)), "en", api_name="/transcribe") == full_text(direct.segments)


# --- The page in headless Chromium ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scripted_studio(fer_export):
    from evoxtral.studio.app import build_studio

    app = build_studio(StudioEngine(ServeSettings(fer_model=str(fer_export)), {"model": scripted_transcriber}))
    _, url, _ = app.queue().launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield url
    finally:
        app.close()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium; make system-deps installs it)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def screenshot_dir(tmp_path: Path) -> Path:
    """Where the screenshots go: $STUDIO_SCREENSHOT_DIR when set (to look at them), else the test's tmp_path."""
    folder = Path(os.environ.get("STUDIO_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_page_transcribes_an_upload_plays_a_segment_edits_and_exports(
    browser, scripted_studio, face_png, tmp_path
):
    shots = screenshot_dir(tmp_path)
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(scripted_studio)
    page.locator("#evx-audio input[type=file]").set_input_files(str(SPEECH))
    page.locator("#evx-audio audio, #evx-audio [data-testid=waveform-Recording]").first.wait_for(timeout=30_000)
    page.get_by_label("Label speakers (diarization)").check()
    page.click("#evx-transcribe")
    page.wait_for_selector("#evx-timeline .evx-segment", timeout=60_000)

    # The transcript box: both segments, every tag as a chip of its category, emphasis in bold.
    lines = page.locator("#evx-transcript .evx-line")
    assert lines.count() == 2
    assert (
        lines.first.inner_text()
        == "Speaker 1: [nervous] Clip of 4.0 SECONDS [laughs nervously] ok [short pause] [zzz]"
    )
    categories = page.locator("#evx-transcript .evx-line .evx-tag").evaluate_all(
        "els => els.map(e => e.dataset.category)"
    )
    assert categories == ["emotion", "reaction", "pause", "unknown"] * 2
    assert page.locator("#evx-transcript .evx-line .evx-emphasis").all_inner_texts() == ["SECONDS", "SECONDS"]
    assert "nervous" in page.inner_text("#evx-counts") and "not in the vocabulary" in page.inner_text("#evx-counts")
    # The timeline: one block per segment, in order, coloured by its emotion.
    blocks = page.locator("#evx-timeline .evx-segment")
    assert blocks.count() == 2
    assert blocks.evaluate_all("els => els.map(e => e.dataset.emotion)") == ["joy", "joy"]
    assert blocks.all_inner_texts() == ["joy · Speaker 1"] * 2  # one espeak-ng voice: one speaker
    assert lines.first.inner_text().startswith("Speaker 1:")
    assert "2 segments from 7.5 s of audio" in page.inner_text("#evx-status")
    # A click on a block loads that segment into the player (4.0 s: the first phrase).
    blocks.first.click()
    page.wait_for_function(
        "() => document.querySelector('#evx-player') && document.querySelector('#evx-player').innerText.includes('0:04')",
        timeout=30_000,
    )
    page.screenshot(path=str(shots / "studio_transcribe.png"), full_page=True)

    # Edit the first segment, then export ElevenLabs v3 text: the edit is in it, under canonical tag names.
    page.get_by_role("tab", name="Edit & export").click()
    page.locator("#evx-editor [role=gridcell]").nth(3).dblclick()
    cell_editor = page.locator("#evx-editor textarea, #evx-editor input[type=text]").first
    cell_editor.fill("[whispering] HELLO [laughing] there")
    cell_editor.press("Enter")
    page.get_by_label("elevenlabs").check()
    page.click("#evx-export")
    page.wait_for_function(
        "() => document.querySelector('#evx-export-preview').innerText.includes('[whispers] HELLO [laughs] there')",
        timeout=30_000,
    )
    assert "Exported elevenlabs (2 segments)." in page.inner_text("#evx-status")
    assert page.inner_text("#evx-export-preview").count("Speaker 1:") == 1  # one turn, one speaker line
    page.screenshot(path=str(shots / "studio_export.png"), full_page=True)

    # A file that is not audio: a readable message in the status line, no traceback, and the page keeps working.
    page.get_by_role("tab", name="Transcribe").click()
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not a recording " * 50)
    page.locator("#evx-audio button[aria-label='Clear']").click()
    page.locator("#evx-audio input[type=file]").set_input_files(str(not_audio))
    page.wait_for_timeout(500)
    page.click("#evx-transcribe")
    page.wait_for_selector("#evx-status .evx-error", timeout=30_000)
    status = page.inner_text("#evx-status")
    assert "'notes.wav' is not a readable audio file" in status and "Traceback" not in page.content()
    page.screenshot(path=str(shots / "studio_bad_input.png"), full_page=True)
    page.locator("#evx-audio button[aria-label='Clear']").click()
    page.locator("#evx-audio input[type=file]").set_input_files(str(SPEECH))
    page.wait_for_timeout(500)
    page.click("#evx-transcribe")
    page.wait_for_selector("#evx-status .evx-ok", timeout=60_000)
    assert page.locator("#evx-timeline .evx-segment").count() == 2

    # Facial emotion next to the transcript: a photo through the configured ONNX export.
    page.get_by_role("tab", name="Facial emotion").click()
    page.locator("#evx-fer-file input[type=file]").set_input_files(str(face_png))
    page.click("#evx-fer-run")
    page.wait_for_function(
        "() => document.querySelector('#evx-status').innerText.includes('Facial emotion (image)')", timeout=30_000
    )
    assert re.search(r'"face_detected"\s*:\s*true', page.inner_text("#evx-fer-result"))
    page.screenshot(path=str(shots / "studio_fer.png"), full_page=True)
    page.close()
