"""The throughput benches run end to end with --tiny and report positive figures for baseline and fast path."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    """Tiny matmuls gain nothing from threads, and on a busy machine two threads spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def check_report(path: Path, bench: str, unit: str) -> dict:
    report = json.loads(path.read_text())
    assert report["bench"] == bench
    assert report["environment"]["device"].startswith("cpu")
    roles = {row["role"]: row for row in report["rows"]}
    assert {"baseline", "fast"} <= set(roles)
    for row in report["rows"]:
        assert row["error"] is None, row
        assert row["throughput_unit"] == unit
        assert row["throughput"] > 0 and row["seconds"] > 0 and row["peak_memory_gib"] > 0
        assert row["mfu_percent"] > 0  # computed from the --peak_tflops the test passes
        assert row["speedup"] == pytest.approx(row["throughput"] / roles["baseline"]["throughput"])
    return report


def test_sample_throughput_tiny(evoxtral_cache, tmp_path, one_thread, capsys):
    output = tmp_path / "sample.json"
    # The transformers sampler only: the vLLM row needs the vLLM environment (tests/test_vllm.py runs both).
    load_bench("sample_throughput").main(
        ["--tiny", "--samplers", "transformers", "--peak_tflops", "0.1", "--output", str(output)]
    )
    report = check_report(output, "sample_throughput", "tokens/s")
    assert report["settings"]["prompt_tokens"] > 375  # one chunk's audio placeholders plus the request's tokens
    assert "| baseline |" in capsys.readouterr().out


def test_sample_throughput_skips_vllm_without_its_environment(evoxtral_cache, tmp_path, monkeypatch, capsys):
    from evoxtral.model import vllm_runner

    bench = load_bench("sample_throughput")
    with pytest.raises(SystemExit):
        bench.parse_args(["--tiny", "--samplers", "vlm"])
    monkeypatch.setattr(vllm_runner, "find_vllm_python", lambda: None)
    output = tmp_path / "sample.json"
    bench.main(["--tiny", "--samplers", "vllm", "--output", str(output)])
    report = json.loads(output.read_text())
    assert report["rows"] == [] and "no vLLM environment" in report["settings"]["skipped"]["vllm"]
    assert "Skipping the vLLM row: no vLLM environment" in capsys.readouterr().out


def test_sft_throughput_tiny(evoxtral_cache, tmp_path, one_thread):
    output = tmp_path / "sft.json"
    load_bench("sft_throughput").main(
        ["--tiny", "--measure_steps", "1", "--peak_tflops", "0.1", "--output", str(output)]
    )
    report = check_report(output, "sft_throughput", "samples/s")
    rows = {row["role"]: row for row in report["rows"]}
    # The baseline really ran the original's settings and the fast row the fast paths, through the recipe.
    original = {"samples_per_step": 16, "activation_checkpointing": True, "lora_on_audio_encoder": True}
    assert {name: rows["baseline"]["settings"][name] for name in original} == original
    assert rows["baseline"]["settings"]["audio_encoder_cache"] is False
    assert rows["fast"]["settings"]["audio_encoder_cache"] is True
    assert rows["fast"]["settings"]["activation_checkpointing"] is False
    assert rows["fast"]["settings"]["train_sampling_strategy"] == "group_by_length"
    assert report["settings"]["mean_sequence_tokens"] > report["settings"]["prompt_tokens"] > 375


def test_input_pipeline_tiny(evoxtral_cache, tmp_path, one_thread):
    output = tmp_path / "input_pipeline.json"
    report = load_bench("input_pipeline").main(["--tiny", "--workers", "0", "--output", str(output)])
    assert json.loads(output.read_text()) == report
    for cache in ("states", "log_mel"):
        storages = report[cache]["storages"]
        assert set(storages) == {"lists", "numpy", "npy"}
        assert all(storages[storage]["0"] > 0 for storage in storages)
