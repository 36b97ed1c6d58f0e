"""Audio decoding: every format libsndfile reads, any rate and channel count, clear errors on bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import encode, tone

from evoxtral.data.audio import (
    CHUNK_SAMPLES,
    AudioDecodeError,
    AudioTooLong,
    UnsupportedAudioFormat,
    decode_audio_value,
    load_audio,
    num_audio_tokens,
    num_chunks,
)


def dominant_frequency(samples: np.ndarray, sampling_rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / sampling_rate)[spectrum.argmax()])


@pytest.mark.parametrize(
    "format, subtype",
    [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", None), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")],
)
def test_formats_decode_to_16k_mono_with_the_same_pitch(format, subtype):
    stereo_44k = tone(1.0, 440.0, sampling_rate=44100, channels=2)
    samples = load_audio(encode(stereo_44k, 44100, format, subtype))
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 16000) < 16000 * 0.1  # mp3 adds encoder delay
    assert dominant_frequency(samples) == pytest.approx(440.0, abs=2.0)


def test_path_bytes_and_file_object_agree(tmp_path):
    wav = encode(tone(0.5, 300.0, sampling_rate=8000), 8000)
    path = tmp_path / "clip.wav"
    path.write_bytes(wav)
    from_path = load_audio(path)
    assert np.array_equal(from_path, load_audio(str(path)))
    assert np.array_equal(from_path, load_audio(wav))
    assert np.array_equal(from_path, load_audio(io.BytesIO(wav)))
    assert len(from_path) == 8000


def test_requested_sampling_rate_is_honoured():
    assert len(load_audio(encode(tone(1.0, 200.0), 16000), sampling_rate=24000)) == 24000


def test_empty_input_is_rejected():
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(b"")


def test_non_audio_is_rejected():
    with pytest.raises(AudioDecodeError, match="not a readable audio file"):
        load_audio(b"<html>this is a web page, not a recording</html>" * 20)


def test_truncated_wav_is_rejected():
    wav = encode(tone(1.0, 440.0), 16000)
    with pytest.raises(AudioDecodeError, match="truncated"):
        load_audio(wav[: len(wav) // 2])


@pytest.mark.parametrize("placeholder", [0xFFFFFFFF, 0x7FFFF000])
def test_wav_with_unknown_length_from_a_stream_is_accepted(placeholder):
    """Streaming writers (ffmpeg to a pipe, espeak-ng --stdout) cannot know the data size up front."""
    wav = bytearray(encode(tone(1.0, 440.0), 16000))
    data_at = wav.index(b"data")
    wav[data_at + 4 : data_at + 8] = placeholder.to_bytes(4, "little")
    assert len(load_audio(bytes(wav))) == 16000


@pytest.mark.parametrize("format, subtype", [("MP3", "MPEG_LAYER_III"), ("FLAC", None), ("OGG", "VORBIS")])
def test_truncated_compressed_audio_is_rejected(format, subtype):
    encoded = encode(tone(2.0, 440.0, sampling_rate=44100), 44100, format, subtype)
    with pytest.raises(AudioDecodeError):
        load_audio(encoded[: len(encoded) // 2])


def test_text_mode_file_object_is_rejected(tmp_path):
    path = tmp_path / "clip.txt"
    path.write_text("not audio")
    with open(path) as handle, pytest.raises(AudioDecodeError, match="text mode"):
        load_audio(handle)


def test_dataset_values_decode():
    wav = encode(tone(0.5, 300.0, sampling_rate=8000), 8000)
    from_dict = decode_audio_value({"array": tone(0.5, 300.0, sampling_rate=8000), "sampling_rate": 8000})
    from_bytes = decode_audio_value({"bytes": wav, "path": None})
    assert len(from_dict) == len(from_bytes) == 8000
    assert np.abs(from_dict - from_bytes).max() < 1e-3  # 16-bit quantisation only
    assert np.array_equal(decode_audio_value(from_dict), from_dict)  # arrays are taken as 16 kHz
    with pytest.raises(AudioDecodeError, match="neither array, bytes nor path"):
        decode_audio_value({"bytes": None, "path": None})


def test_non_finite_and_empty_arrays_are_rejected():
    with pytest.raises(AudioDecodeError, match="NaN"):
        decode_audio_value(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(AudioDecodeError, match="no audio samples"):
        decode_audio_value(np.zeros(0, dtype=np.float32))


def test_chunk_counts_follow_voxtrals_30_second_chunks():
    assert [num_chunks(n) for n in (1, CHUNK_SAMPLES, CHUNK_SAMPLES + 1, 3 * CHUNK_SAMPLES)] == [1, 1, 2, 3]
    assert num_audio_tokens(40 * 16000) == 750


@pytest.mark.parametrize(
    "header, container",
    [
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isomiso2", "MP4/M4A"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm", "WebM/Matroska"),
        (b"\xff\xf1\x50\x80\x02\x1f\xfc", "AAC"),
    ],
)
def test_audio_containers_libsndfile_cannot_read_are_named(header, container):
    with pytest.raises(UnsupportedAudioFormat, match=f"is {container}.*convert it"):
        load_audio(header + bytes(4000))
    with pytest.raises(AudioDecodeError, match="not a readable audio file"):  # unknown bytes stay a plain decode error
        load_audio(b"\x00\x00\x00\x20moov" + bytes(4000))


@pytest.mark.parametrize("format, subtype", [("WAV", "PCM_16"), ("FLAC", None), ("OGG", "VORBIS")])
def test_audio_over_the_length_limit_is_refused_from_its_header(format, subtype):
    clip = encode(tone(3.0, 440.0), 16000, format, subtype)
    with pytest.raises(AudioTooLong, match="lasts 3.0 s, more than the 2 s allowed"):
        load_audio(clip, max_seconds=2)
    assert len(load_audio(clip, max_seconds=3.5)) == 48000


def test_length_limit_reads_a_streamed_wav_by_its_real_length():
    wav = bytearray(encode(tone(1.0, 440.0), 16000))
    data_at = wav.index(b"data")
    wav[data_at + 4 : data_at + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    assert len(load_audio(bytes(wav), max_seconds=2)) == 16000
