"""Pieces of the transcription server that need no model: segment planning, subtitles, settings, micro-batching."""

import asyncio
import threading
from dataclasses import asdict

import numpy as np
import pytest

from evoxtral.scoring.tags import segment_emotion
from evoxtral.serving.batching import MicroBatcher, QueueFull
from evoxtral.serving.results import TimedText, native_result, srt, verbose_json_result, vtt
from evoxtral.serving.segmentation import SAMPLING_RATE, Segment, is_silent, merge_speech_runs
from evoxtral.serving.settings import ServeSettings, settings_from_cli
from evoxtral.serving.transcriber import DecodingOptions


def seconds(start, end):
    return Segment(int(start * SAMPLING_RATE), int(end * SAMPLING_RATE))


def test_nearby_speech_runs_merge_and_distant_ones_stay_apart():
    runs = [seconds(0, 2), seconds(2.5, 4), seconds(7, 9)]
    assert merge_speech_runs(runs, max_segment_s=30, merge_gap_s=1.0) == [seconds(0, 4), seconds(7, 9)]


def test_merging_never_exceeds_the_segment_limit():
    runs = [seconds(0, 20), seconds(20.5, 29), seconds(29.2, 35)]
    merged = merge_speech_runs(runs, max_segment_s=30, merge_gap_s=1.0)
    assert merged == [seconds(0, 29), seconds(29.2, 35)]


def test_a_run_longer_than_the_limit_is_cut_into_equal_parts():
    parts = merge_speech_runs([seconds(0, 70)], max_segment_s=30, merge_gap_s=1.0)
    assert len(parts) == 3
    assert parts[0].start == 0 and parts[-1].end == 70 * SAMPLING_RATE
    assert all(part.end - part.start <= 30 * SAMPLING_RATE for part in parts)
    assert all(a.end == b.start for a, b in zip(parts, parts[1:]))


def test_silence_is_judged_by_peak_level():
    assert is_silent(np.zeros(16000, np.float32))
    assert is_silent(np.full(16000, 1e-4, np.float32))
    assert not is_silent(np.full(16000, 0.05, np.float32))


SEGMENTS = [TimedText(0.0, 2.5, "[nervous] So... I was THINKING"), TimedText(3661.25, 3663.0, "x < y & [laughs]")]


def test_srt_keeps_tags_and_numbers_cues():
    assert srt(SEGMENTS) == (
        "1\n00:00:00,000 --> 00:00:02,500\n[nervous] So... I was THINKING\n\n"
        "2\n01:01:01,250 --> 01:01:03,000\nx < y & [laughs]\n"
    )


def test_vtt_keeps_tags_and_escapes_markup():
    assert vtt(SEGMENTS) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n[nervous] So... I was THINKING\n\n"
        "01:01:01.250 --> 01:01:03.000\nx &lt; y &amp; [laughs]\n"
    )


def test_empty_segments_make_no_cues():
    assert srt([TimedText(0, 1, "  ")]) == ""
    assert vtt([TimedText(0, 1, "")]) == "WEBVTT\n"


def test_native_result_has_plain_text_tags_and_segment_emotions():
    result = native_result(SEGMENTS, duration=3663.0, language="en", model="m")
    assert result["text"] == "[nervous] So... I was THINKING x < y & [laughs]"
    assert result["plain_text"] == "So... I was thinking x < y &"
    assert [tag["name"] for tag in result["tags"]] == ["nervous", "laughs"]
    assert result["segments"][0]["emotion"] == asdict(segment_emotion("[nervous]"))
    assert result["segments"][1]["emotion"] == asdict(segment_emotion("[laughs]"))
    assert result["emotion"] == asdict(segment_emotion("[nervous] [laughs]"))
    assert result["segments"][1]["tags"] == ["laughs"]


def test_verbose_json_follows_the_openai_shape():
    result = verbose_json_result(SEGMENTS, duration=3663.0, language=None, temperature=0.2)
    assert result["task"] == "transcribe" and result["duration"] == 3663.0
    assert [segment["seek"] for segment in result["segments"]] == [0, 366125]
    assert result["segments"][1]["temperature"] == 0.2
    assert result["usage"] == {"type": "duration", "seconds": 3663.0}


def test_settings_read_env_then_cli_and_never_show_the_key():
    environ = {"EVOXTRAL_MAX_BATCH": "3", "EVOXTRAL_PORT": "9000", "EVOXTRAL_API_KEY": "s3cret"}
    settings = settings_from_cli(["--port", "9100", "--adapter", "out/adapter"], environ)
    assert (settings.max_batch, settings.port, settings.adapter, settings.host) == (
        3,
        9100,
        "out/adapter",
        "127.0.0.1",
    )
    assert settings.api_key == "s3cret"
    assert "s3cret" not in repr(settings)
    with pytest.raises(SystemExit):
        settings_from_cli(["--api-key", "visible-in-ps"], {})


def test_settings_refuse_impossible_values():
    with pytest.raises(ValueError, match="max_segment_s"):
        ServeSettings(max_segment_s=45)
    with pytest.raises(ValueError, match="EVOXTRAL_MAX_BATCH"):
        ServeSettings.from_env({"EVOXTRAL_MAX_BATCH": "many"})


def test_micro_batcher_batches_across_requests_by_decoding_options():
    calls = []

    def transcriber(clips, options):
        calls.append((len(clips), options.language))
        return [f"{options.language}:{clip[0]:.0f}" for clip in clips]

    async def scenario():
        batcher = MicroBatcher(transcriber, max_batch=4, max_wait_ms=50, max_queue=10)
        await batcher.start()
        english = [batcher.transcribe([np.full(4, i, np.float32)], DecodingOptions("en")) for i in range(6)]
        french = batcher.transcribe([np.full(4, 9, np.float32), np.full(4, 8, np.float32)], DecodingOptions("fr"))
        results = await asyncio.gather(*english, french)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert results == [[f"en:{i}"] for i in range(6)] + [["fr:9", "fr:8"]]
    assert sum(size for size, _ in calls) == 8 and max(size for size, _ in calls) <= 4
    assert len(calls) < 8  # segments of different requests shared model calls


def test_admission_is_bounded_and_slots_are_released():
    batcher = MicroBatcher(lambda clips, options: [""] * len(clips), max_batch=2, max_queue=2)
    with batcher.admit(), batcher.admit():
        with pytest.raises(QueueFull) as full:
            with batcher.admit():
                pass
        assert full.value.retry_after_s >= 1
    assert batcher.active_requests == 0
    with batcher.admit():
        assert batcher.active_requests == 1


def test_a_failing_model_fails_its_requests_and_the_worker_keeps_going():
    fail_next = threading.Event()
    fail_next.set()

    def transcriber(clips, options):
        if fail_next.is_set():
            fail_next.clear()
            raise RuntimeError("out of memory")
        return ["ok"] * len(clips)

    async def scenario():
        batcher = MicroBatcher(transcriber, max_batch=4, max_wait_ms=0, max_queue=4)
        await batcher.start()
        with pytest.raises(RuntimeError, match="out of memory"):
            await batcher.transcribe([np.zeros(4, np.float32)], DecodingOptions())
        second = await batcher.transcribe([np.zeros(4, np.float32)], DecodingOptions())
        await batcher.stop()
        return second

    assert asyncio.run(scenario()) == ["ok"]
