"""The studio as a Gradio app: `build_studio(engine)` returns the Blocks; `launch_studio(settings)` loads the
model the settings name and serves it.

Tabs: Transcribe (upload or record, progress over the segments, the highlighted transcript with per-tag counts, the
waveform with the segments on a timeline, a click on a segment plays it), Edit & export, Compare (two models on the
same clip) and Facial emotion (when an ONNX FER export is configured). Named API endpoints, for `gradio_client`:
``/transcribe`` (audio file -> tagged transcript) and ``/transcribe_json`` (audio file -> the server's native
/transcribe JSON).

Errors a user can cause (no audio, not audio, empty, too long, silent, a broken edit) are shown as a message in the
status line and change nothing else; anything unexpected is logged and reported in one sentence.
"""

from __future__ import annotations

import html
import mimetypes
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np

from evoxtral.serving.results import full_text, native_result
from evoxtral.serving.routes import served_name
from evoxtral.serving.segmentation import SAMPLING_RATE
from evoxtral.serving.settings import ServeSettings
from evoxtral.studio.engine import StudioEngine, StudioInputError, StudioResult, model_transcribers
from evoxtral.studio.export import (
    EXPORT_FORMATS,
    TABLE_HEADERS,
    EditError,
    rows_to_segments,
    segments_to_rows,
    write_export,
)
from evoxtral.studio.render import STUDIO_CSS, tag_count_rows, timeline_html, transcript_html
from evoxtral.utils.logging import get_logger

logger = get_logger("evoxtral.studio")

COUNT_HEADERS = ["tag", "category", "count"]
UNEXPECTED = "The studio could not process this request; the error has been logged on the server."
# A click on a timeline block puts its index into the component's value and fires `submit`, which plays it.
TIMELINE_JS = """
element.addEventListener('click', (event) => {
  const block = event.target.closest('.evx-segment');
  if (!block) return;
  props.value = {...props.value, selected: Number(block.dataset.index)};
  trigger('submit');
});
"""
EMPTY_TIMELINE = {"html": '<div class="evx-empty">The timeline appears once a recording is transcribed.</div>'}


def _status(message: str, ok: bool = True) -> str:
    return f'<div class="evx-status {"evx-ok" if ok else "evx-error"}">{html.escape(message)}</div>'


def _guarded(handler, outputs: int):
    """A handler whose user errors become a status message (the other outputs left as they were) and whose
    unexpected errors are logged, never shown as a traceback. The status is the handler's last output."""

    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except (StudioInputError, EditError) as error:
            return *[gr.skip()] * (outputs - 1), _status(str(error), ok=False)
        except Exception:
            logger.exception("studio handler %s failed", handler.__name__)
            return *[gr.skip()] * (outputs - 1), _status(UNEXPECTED, ok=False)

    wrapped.__name__ = handler.__name__
    return wrapped


def _language(value: str | None) -> str | None:
    from evoxtral.serving.settings import language_code

    if value is None or not value.strip():
        return None
    if value.strip() == "auto":
        return None
    try:
        return language_code(value)
    except ValueError as error:
        raise StudioInputError(str(error)) from error


def _segment_choices(result: StudioResult) -> list[tuple[str, int]]:
    return [
        (f"{index + 1}. {s.start:.1f}-{s.end:.1f} s {s.speaker or ''} {s.text.strip()[:60]}", index)
        for index, s in enumerate(result.segments)
    ]


def _views(result: StudioResult):
    return (
        transcript_html(result.segments),
        tag_count_rows(result.segments),
        {"html": timeline_html(result.audio, result.segments), "selected": None},
        gr.update(choices=_segment_choices(result), value=None),
        segments_to_rows(result.segments),
    )


def build_studio(engine: StudioEngine, title: str = "Evoxtral Studio") -> gr.Blocks:
    settings = engine.settings
    model_label = served_name(settings.model) + (f" + {served_name(settings.adapter)}" if settings.adapter else "")
    export_dir = Path(tempfile.mkdtemp(prefix="evoxtral-studio-"))

    def transcribe_clip(audio_path, model, diarize, language, progress=gr.Progress()):
        result = engine.transcribe(
            audio_path, model, diarize=diarize, language=_language(language),
            progress=lambda fraction, description: progress(fraction, desc=description),
        )  # fmt: skip
        seconds = result.duration
        summary = f"{len(result.segments)} segments from {seconds:.1f} s of audio, transcribed by {model}."
        return result, *_views(result), _status(summary)

    def play_segment(timeline_value, result: StudioResult | None):
        index = (timeline_value or {}).get("selected")
        return _segment_audio(result, index)

    def play_chosen(index, result: StudioResult | None):
        return _segment_audio(result, index)

    def _segment_audio(result, index):
        if result is None or index is None or not 0 <= int(index) < len(result.segments):
            return gr.skip()
        segment = result.segments[int(index)]
        clip = result.audio[int(segment.start * SAMPLING_RATE) : int(segment.end * SAMPLING_RATE)]
        return SAMPLING_RATE, (np.clip(clip, -1, 1) * 32767).astype(np.int16)

    def apply_edits(rows, result: StudioResult | None):
        if result is None:
            raise StudioInputError("Transcribe a recording first, then edit its segments.")
        edited = StudioResult(result.audio, rows_to_segments(rows), result.model, result.language,
                              result.diarization_method)  # fmt: skip
        return edited, *_views(edited), _status(f"Edits applied: {len(edited.segments)} segments.")

    def export(rows, fmt, result: StudioResult | None):
        if result is None:
            raise StudioInputError("Transcribe a recording first, then export it.")
        segments = rows_to_segments(rows)
        path = write_export(segments, fmt, Path(tempfile.mkdtemp(dir=export_dir)), "transcript",
                            result.duration, result.language, served_name(settings.model))  # fmt: skip
        return str(path), path.read_text(encoding="utf-8"), _status(f"Exported {fmt} ({len(segments)} segments).")

    def compare(audio_path, left, right, language, progress=gr.Progress()):
        results = engine.compare(
            audio_path, (left, right), _language(language), lambda fraction, text: progress(fraction, desc=text)
        )
        counts = [{row[0]: row[2] for row in tag_count_rows(result.segments)} for result in results]
        rows = [[tag, counts[0].get(tag, 0), counts[1].get(tag, 0)] for tag in sorted(set(counts[0]) | set(counts[1]))]
        summary = f"Compared {left} and {right} on the same {len(results[0].segments)} segments."
        return transcript_html(results[0].segments), transcript_html(results[1].segments), rows, _status(summary)

    def facial_emotion(media_path, webcam_path, result: StudioResult | None):
        path = media_path or webcam_path
        if path is None:
            raise StudioInputError("No image or video: upload one or take a webcam picture first.")
        data = Path(path).read_bytes()
        if not data:
            raise StudioInputError("The uploaded file is empty.")
        content_type = mimetypes.guess_type(str(path))[0]
        segments = None
        if result is not None and (content_type or "").startswith("video/"):
            segments = [{"start": s.start, "end": s.end, "text": s.text} for s in result.segments]
        answer = engine.classify_face(data, content_type, Path(path).name, segments)
        summary = (
            answer.get("emotion")
            or ", ".join(
                f"{s['start']:.1f}-{s['end']:.1f} s: {s['facial_emotion']}" for s in answer.get("segments", [])
            )
            or f"{len(answer.get('seconds', []))} seconds of video classified"
        )
        return answer, _status(f"Facial emotion ({answer['kind']}): {summary}")

    def api_transcribe(audio_path, language):
        """Audio file -> the tagged transcript (inline [tags] and CAPITALISED emphasis)."""
        try:
            return full_text(engine.transcribe(audio_path, language=_language(language)).segments)
        except StudioInputError as error:
            raise gr.Error(str(error)) from error

    def api_transcribe_json(audio_path, language, diarize):
        """Audio file -> the server's native /transcribe JSON: text, plain text, tags, timed segments, emotions."""
        try:
            result = engine.transcribe(audio_path, diarize=bool(diarize), language=_language(language))
        except StudioInputError as error:
            raise gr.Error(str(error)) from error
        return native_result(result.segments, result.duration, result.language, served_name(settings.model))

    with gr.Blocks(title=title) as studio:
        gr.HTML(f"<style>{STUDIO_CSS}</style>", padding=False)
        gr.Markdown(
            f"# {title}\nSpeech in, a transcript out that keeps how it was said: inline "
            f"[ElevenLabs v3 audio tags](https://elevenlabs.io/docs) and CAPITALISED emphasis. Model: `{model_label}`."
        )
        state = gr.State(None)
        status = gr.HTML(_status("Upload or record a clip, then press Transcribe."), elem_id="evx-status")
        with gr.Tab("Transcribe"):
            with gr.Row():
                with gr.Column(scale=1):
                    audio_input = gr.Audio(
                        sources=["upload", "microphone"], type="filepath", label="Recording", elem_id="evx-audio"
                    )
                    model_choice = gr.Dropdown(engine.model_names, value=engine.model_names[0], label="Model")
                    diarize = gr.Checkbox(False, label="Label speakers (diarization)")
                    language = gr.Textbox(settings.language, label="Language (ISO 639-1, or auto)")
                    run = gr.Button("Transcribe", variant="primary", elem_id="evx-transcribe")
                with gr.Column(scale=2):
                    transcript = gr.HTML(transcript_html([]), label="Transcript", elem_id="evx-transcript")
                    counts = gr.Dataframe(headers=COUNT_HEADERS, label="Tags", interactive=False, elem_id="evx-counts")
            timeline = gr.HTML(
                EMPTY_TIMELINE, html_template="${value.html}", js_on_load=TIMELINE_JS, label="Timeline",
                elem_id="evx-timeline",
            )  # fmt: skip
            with gr.Row():
                segment_choice = gr.Dropdown([], label="Play a segment", elem_id="evx-segment-choice")
                segment_player = gr.Audio(
                    label="Segment", autoplay=True, interactive=False, type="numpy", elem_id="evx-player"
                )
        with gr.Tab("Edit & export"):
            gr.Markdown(
                "Edit the text of any segment (add, remove or change `[tags]`, CAPITALISE a word to emphasise it), "
                "then apply the edits or export. ElevenLabs v3 text is ready for re-synthesis with the same delivery."
            )
            editor = gr.Dataframe(
                headers=TABLE_HEADERS, datatype=["number", "number", "str", "str"], interactive=True,
                label="Segments", elem_id="evx-editor", wrap=True,
            )  # fmt: skip
            with gr.Row():
                apply = gr.Button("Apply edits", elem_id="evx-apply")
                export_format = gr.Radio(list(EXPORT_FORMATS), value="srt", label="Format")
                export_button = gr.Button("Export", variant="primary", elem_id="evx-export")
            export_file = gr.File(label="Download", elem_id="evx-export-file")
            export_preview = gr.Code(label="Preview", elem_id="evx-export-preview")
        with gr.Tab("Compare"):
            if len(engine.model_names) < 2:
                gr.Markdown(
                    "Only one model is loaded. Start the studio with an adapter (`make studio MODEL=... ADAPTER=...`) "
                    "to compare the base model with the adapter on the same clip."
                )
            with gr.Row():
                left = gr.Dropdown(engine.model_names, value=engine.model_names[0], label="Left")
                right = gr.Dropdown(engine.model_names, value=engine.model_names[-1], label="Right")
                compare_button = gr.Button("Compare on the recording", elem_id="evx-compare")
            with gr.Row():
                left_view = gr.HTML(label="Left", elem_id="evx-compare-left")
                right_view = gr.HTML(label="Right", elem_id="evx-compare-right")
            compare_counts = gr.Dataframe(headers=["tag", "left", "right"], label="Tag counts", interactive=False)
        with gr.Tab("Facial emotion"):
            if not engine.fer_configured:
                gr.Markdown(
                    "Facial emotion recognition is not configured: start the studio with `--fer-model <ONNX export "
                    "folder>` (or `EVOXTRAL_FER_MODEL`), made by `make fer-onnx`."
                )
            with gr.Row():
                face_media = gr.File(file_types=["image", "video"], label="Image or video", elem_id="evx-fer-file")
                face_webcam = gr.Image(sources=["webcam"], type="filepath", label="Webcam")
            face_button = gr.Button(
                "Recognise facial emotion", interactive=engine.fer_configured, elem_id="evx-fer-run"
            )
            face_result = gr.JSON(label="Facial emotion", elem_id="evx-fer-result")

        views = [transcript, counts, timeline, segment_choice, editor]
        run.click(
            _guarded(transcribe_clip, 7), [audio_input, model_choice, diarize, language], [state, *views, status],
            api_visibility="private", show_progress_on=[transcript],
        )  # fmt: skip
        timeline.submit(play_segment, [timeline, state], segment_player, api_visibility="private")
        segment_choice.change(play_chosen, [segment_choice, state], segment_player, api_visibility="private")
        apply.click(_guarded(apply_edits, 7), [editor, state], [state, *views, status], api_visibility="private")
        export_button.click(
            _guarded(export, 3), [editor, export_format, state], [export_file, export_preview, status],
            api_visibility="private",
        )  # fmt: skip
        compare_button.click(
            _guarded(compare, 4), [audio_input, left, right, language],
            [left_view, right_view, compare_counts, status], api_visibility="private",
        )  # fmt: skip
        face_button.click(
            _guarded(facial_emotion, 2), [face_media, face_webcam, state], [face_result, status],
            api_visibility="private",
        )  # fmt: skip

        # The named API: hidden components carry the inputs, so the endpoints take a file as gradio_client sends it.
        api_audio = gr.Audio(type="filepath", visible=False)
        api_language = gr.Textbox(settings.language, visible=False)
        api_diarize = gr.Checkbox(False, visible=False)
        api_text = gr.Textbox(visible=False)
        api_json = gr.JSON(visible=False)
        api_trigger = gr.Button(visible=False)
        api_trigger.click(api_transcribe, [api_audio, api_language], api_text, api_name="transcribe")
        api_trigger.click(
            api_transcribe_json, [api_audio, api_language, api_diarize], api_json, api_name="transcribe_json"
        )
    return studio


def load_studio_engine(settings: ServeSettings) -> StudioEngine:
    return StudioEngine(settings, model_transcribers(settings))


def launch_studio(settings: ServeSettings) -> None:
    """Load the model, build the app and serve it on settings.host:settings.port until interrupted."""
    studio = build_studio(load_studio_engine(settings))
    studio.queue(max_size=settings.max_queue).launch(
        server_name=settings.host,
        server_port=settings.port,
        max_file_size=f"{settings.max_upload_mb:g}mb",
        show_error=False,
    )
