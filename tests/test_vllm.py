"""vLLM against transformers on a tiny Voxtral, in the vLLM environment (`make test-vllm` builds it): an adapter
trained by recipes/sft.py is exported, checked and served by vLLM with the same greedy transcripts as transformers,
the base too, our API with `--engine vllm` answers as with the transformers engine, RAFT runs with `sampler: vllm`,
and the sampling bench measures both samplers in one run.

vLLM's CPU attention takes head sizes that are multiples of 32, so the model here is evoxtral-tiny with 2 heads of
32 instead of 4 of 16 (`python -m evoxtral.model.tiny --num-attention-heads 2`). Each test starts one vLLM engine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from conftest import encode

from evoxtral.model.vllm_runner import find_vllm_python

REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(find_vllm_python() is None, reason="needs the vLLM environment (make vllm-venv)"),
]
MAX_NEW_TOKENS = 16
NUM_CLIPS = 6


@pytest.fixture(scope="module")
def vllm_base(tmp_path_factory):
    from evoxtral.model.tiny import build_tiny_voxtral

    return build_tiny_voxtral(tmp_path_factory.mktemp("vllm-tiny") / "model", num_attention_heads=2)


@pytest.fixture(scope="module")
def trained_adapter(vllm_base, tiny_sft_dataset, tmp_path_factory):
    """The tiny SFT recipe (LoRA on the language model and projector, lm_head in full), a few steps."""
    output_dir = tmp_path_factory.mktemp("vllm-sft") / "sft"
    command = [
        sys.executable, "recipes/sft.py", "--config", "recipes/tiny/sft.yaml", "--model_name_or_path", str(vllm_base),
        "--dataset_name", str(tiny_sft_dataset), "--output_dir", str(output_dir), "--max_steps", "8",
        "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--neftune_noise_alpha", "null",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return output_dir


@pytest.fixture(scope="module")
def clips(tiny_sft_dataset):
    import datasets

    from evoxtral.data.audio import decode_audio_value

    rows = datasets.load_from_disk(str(tiny_sft_dataset))["validation"]
    rows = rows.cast_column("audio", datasets.Audio(decode=False))  # our decoder, not datasets' (torchcodec)
    return [decode_audio_value(rows[index]["audio"]) for index in range(min(NUM_CLIPS, len(rows)))]


def transformers_greedy(model_name_or_path, clips, adapter=None):
    from evoxtral.model.inference import transcribe
    from evoxtral.model.loading import load_model_and_processor

    model, processor = load_model_and_processor(model_name_or_path, adapter=adapter, dtype="float32")
    return transcribe(model, processor, clips, max_new_tokens=MAX_NEW_TOKENS, progress=False), processor


def test_trained_adapter_export_is_checked_in_vllm(trained_adapter, tmp_path):
    from evoxtral.model.vllm_export import export_for_vllm

    export = export_for_vllm(str(trained_adapter), tmp_path / "export")  # the default check runs vLLM
    assert export.lora_dir is not None and "model.multi_modal_projector.linear_1" in export.merged
    figures = export.check
    assert figures["max_abs_logprob_diff"] < 2e-3  # vLLM + LoRA agrees with transformers + adapter
    assert figures["lora_moves_vllm_by"] > 100 * figures["max_abs_logprob_diff"]  # and the LoRA is not a no-op


def test_greedy_transcripts_equal_transformers_for_a_trained_adapter(trained_adapter, clips, tmp_path):
    from evoxtral.model.vllm_export import export_for_vllm
    from evoxtral.model.vllm_runner import decode_token_ids, run_vllm

    expected, processor = transformers_greedy(str(trained_adapter), clips)
    export = export_for_vllm(str(trained_adapter), tmp_path / "export", check=lambda *_: None)
    greedy = {"temperature": 0.0, "max_tokens": MAX_NEW_TOKENS}
    runs = [{"name": "lora", "lora": str(export.lora_dir), **greedy}, {"name": "without", "lora": None, **greedy}]
    result = run_vllm(export.model_dir, clips, runs, max_lora_rank=export.lora_rank, dtype="float32")
    served = [decode_token_ids(processor, row["token_ids"][0]) for row in result["runs"]["lora"]]
    without = [decode_token_ids(processor, row["token_ids"][0]) for row in result["runs"]["without"]]
    assert served == expected
    assert any(text for text in served)  # something was decoded, not only end-of-sequence
    assert without != served  # the LoRA request is what makes them equal


def test_greedy_transcripts_equal_transformers_for_the_base(vllm_base, clips, tmp_path):
    from evoxtral.model.vllm_export import export_for_vllm
    from evoxtral.model.vllm_runner import transcribe_vllm

    expected, processor = transformers_greedy(str(vllm_base), clips)
    export = export_for_vllm(str(vllm_base), tmp_path / "export", check=lambda *_: None)
    assert transcribe_vllm(export, processor, clips, max_new_tokens=MAX_NEW_TOKENS) == expected


def test_raft_samples_with_vllm(vllm_base, trained_adapter, tiny_sft_dataset, tmp_path):
    import datasets

    output_dir = tmp_path / "raft"
    command = [
        sys.executable, "recipes/raft.py", "--config", "recipes/tiny/raft.yaml", "--sampler", "vllm",
        "--adapter", str(trained_adapter), "--model_name_or_path", str(vllm_base), "--dataset_name", str(tiny_sft_dataset),
        "--output_dir", str(output_dir), "--samples_per_input", "3", "--max_new_tokens", "8",
        "--max_train_samples", "8", "--report_to", "none",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    samples = datasets.load_from_disk(str(output_dir / "round_1" / "samples"))
    assert len(samples) == 8 and all(len(row["samples"]) == 3 for row in samples)
    assert any(len(set(row["samples"])) > 1 for row in samples)  # sampled (temperature 0.7), not greedy copies
    assert (output_dir / "round_1" / "vllm_export" / "lora" / "adapter_model.safetensors").is_file()
    assert (output_dir / "adapter_model.safetensors").is_file()  # and the round trained on what vLLM sampled


# --- serve --engine vllm --------------------------------------------------------------------------------------------

# espeak-ng speech in two phrases (tests/test_serving_api.py): silero-vad cuts it into two segments.
SPEECH = REPO / "tests" / "data" / "speech.ogg"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def openai_transcription(client, audio: bytes, filename: str = "speech.wav"):
    return client.post(
        "/v1/audio/transcriptions",
        files={"file": (filename, audio, "audio/wav")},
        data={"model": "evoxtral", "response_format": "verbose_json"},
    )


def test_serve_engine_vllm_answers_as_the_transformers_engine(vllm_base, trained_adapter):
    """One vLLM server, started by our app from base + adapter (export at start-up), stopped with the app."""
    from fastapi.testclient import TestClient

    from evoxtral.serving import ServeSettings, create_app

    speech = encode(*sf.read(SPEECH, dtype="float32"), "WAV", "PCM_16")
    common = dict(model=str(vllm_base), adapter=str(trained_adapter), dtype="float32", device="cpu",
                  max_new_tokens=MAX_NEW_TOKENS)  # fmt: skip
    with TestClient(create_app(ServeSettings(**common))) as client:
        expected = openai_transcription(client, speech)
    assert expected.status_code == 200, expected.text
    port = free_port()
    with TestClient(create_app(ServeSettings(engine="vllm", vllm_port=port, **common))) as client:
        served = openai_transcription(client, speech)
        corrupt = openai_transcription(client, b"this is a text file, not a recording " * 20)
    assert served.status_code == 200, served.text
    expected, served = expected.json(), served.json()
    assert expected["text"]  # the adapter decodes something, so equality is not two empty strings
    assert served["text"] == expected["text"]
    timed = [[(segment["start"], segment["end"], segment["text"]) for segment in body["segments"]]
             for body in (served, expected)]  # fmt: skip
    assert len(timed[0]) == 2 and timed[0] == timed[1]  # the same VAD segments, each decoded alike
    assert corrupt.status_code == 400, corrupt.text  # our upload checks stand in front of vLLM
    assert corrupt.json()["error"]["code"] == "invalid_audio"
    with pytest.raises(httpx.ConnectError):  # the app stopped the vLLM server it started
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)


# --- the sampling bench -----------------------------------------------------------------------------------------------


def test_sample_bench_measures_both_samplers_in_one_run(evoxtral_cache, tmp_path):
    from test_throughput_bench import check_report, load_bench

    output = tmp_path / "sample.json"
    load_bench("sample_throughput").main(["--tiny", "--peak_tflops", "0.1", "--output", str(output)])
    report = check_report(output, "sample_throughput", "tokens/s")
    rows = {row["role"]: row for row in report["rows"]}
    assert {"baseline", "fast", "variant", "vllm"} == set(rows) and report["settings"]["skipped"] == {}
    assert rows["vllm"]["settings"]["engine_start_seconds"] > 0  # reported apart from the timed generation
