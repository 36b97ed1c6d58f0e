"""What the throughput benches share: a random-init Voxtral at real or tiny shapes, timed runs with peak memory,
model FLOPs with TRL's counting convention, and one report format (JSON plus a printed table).

Real shapes are `VoxtralConfig()`'s defaults, which are Voxtral-Mini-3B-2507's (32-layer Whisper-large encoder,
30-layer 3072-wide language model, 131,072-token vocabulary), initialised at random on the target device: nothing
is downloaded, and the tokenizer is the offline tekken file at full vocabulary.

MFU counts the language model only, with TRL's `compute_flops_per_token` (forward = 2 FLOPs per weight per token
plus attention scores over the whole context; training = 3 x forward). The frozen audio encoder is left out: it is
preprocessing that a cache can remove. Every row of a bench divides the same work by its own time, so MFU ratios
between rows equal throughput ratios. LoRA computes no gradients for the frozen weights, so the 3 x forward
convention overstates the work a LoRA step needs by up to a third: read MFU as a comparison between rows.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import psutil
import soundfile as sf
import torch
import transformers
from transformers import GenerationConfig, VoxtralConfig, VoxtralForConditionalGeneration
from trl.trainer.utils import compute_flops_per_token, get_peak_flops

from evoxtral.data.audio import SAMPLING_RATE
from evoxtral.model.loading import load_model_and_processor
from evoxtral.model.processor import TEKKEN_FILE, build_voxtral_processor
from evoxtral.model.tiny import AUDIO_TOKEN_ID, PAD_TOKEN_ID, TINY_MODEL_NAME, write_voxtral_tekken
from evoxtral.scoring import tags
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)

GIB = 1024**3
RSS_SAMPLE_SECONDS = 0.005


def full_size_voxtral_config() -> VoxtralConfig:
    """Voxtral-Mini-3B-2507's architecture (the defaults of `VoxtralConfig`, plus its audio token id)."""
    return VoxtralConfig(audio_token_id=AUDIO_TOKEN_ID)


def bench_model_and_processor(
    *,
    tiny: bool,
    device: torch.device,
    dtype: torch.dtype,
    workdir: str | Path,
    attn_implementation: str | None = None,
    trainable: bool = False,
):
    """(model, processor): the built-in tiny Voxtral, or a random-init one at real shapes built on `device`."""
    if tiny:
        return load_model_and_processor(
            TINY_MODEL_NAME, dtype=dtype, device=device, attn_implementation=attn_implementation, trainable=trainable
        )
    config = full_size_voxtral_config()
    attention = {"attn_implementation": attn_implementation} if attn_implementation else {}
    with torch.device(device):  # initialised where it runs: 4.7B parameters are slow to initialise on a CPU
        model = VoxtralForConditionalGeneration._from_config(config, dtype=dtype, **attention)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=PAD_TOKEN_ID)
    model.train(trainable)
    model.requires_grad_(trainable)
    tekken = write_voxtral_tekken(Path(workdir) / TEKKEN_FILE, config.text_config.vocab_size)
    return model, build_voxtral_processor(tekken)


def noise_clips(count: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """Clips of 16 kHz noise: random weights make the content irrelevant; only lengths shape the work."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-0.3, 0.3, int(seconds * SAMPLING_RATE)).astype(np.float32) for _ in range(count)]


_WORDS = (
    "so I was thinking maybe we could try that new restaurant downtown if you are free this weekend honestly "
    "it is fine well OK the TV was on and REALLY nobody NEVER listens to me anyway"
).split()


def tagged_transcripts(count: int, mean_words: int, seed: int = 0) -> list[str]:
    """Transcripts in the dataset's style (words, ~1 tag in 8, CAPITALISED emphasis) of 0.5-1.5 x `mean_words`."""
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(count):
        words = []
        for _ in range(int(rng.integers(mean_words // 2, mean_words * 3 // 2 + 1))):
            if rng.random() < 0.125:
                words.append(f"[{rng.choice(tags.ORIGINAL_TAGS)}]")
            words.append(str(rng.choice(_WORDS)))
        texts.append(" ".join(words))
    return texts


def save_speech_dataset(folder: str | Path, clips: list[np.ndarray], texts: list[str]) -> Path:
    """A `train` split of WAV clips (`audio`, undecoded) and transcripts (`tagged_text`), as `make data` saves it."""
    audio = []
    for clip in clips:
        buffer = io.BytesIO()
        sf.write(buffer, clip, SAMPLING_RATE, format="WAV")
        audio.append({"bytes": buffer.getvalue(), "path": None})
    table = datasets.Dataset.from_dict({"audio": audio, "tagged_text": texts})
    table = table.cast_column("audio", datasets.Audio(sampling_rate=SAMPLING_RATE, decode=False))
    datasets.DatasetDict(train=table).save_to_disk(str(folder))
    return Path(folder)


def add_bench_arguments(parser: argparse.ArgumentParser, bench: str) -> None:
    """The options every throughput bench takes."""
    parser.add_argument(
        "--tiny", action="store_true", help="evoxtral-tiny on CPU (default without CUDA): a smoke check"
    )
    parser.add_argument("--peak_tflops", type=float, help="dense peak of the device; default: TRL's table (GPUs)")
    parser.add_argument("--output", default=f"outputs/bench/{bench}.json", help="JSON report")


def fill_shape_defaults(args: argparse.Namespace, defaults: dict[str, dict[str, Any]]) -> argparse.Namespace:
    """Options left unset take the defaults of the chosen shapes: `defaults["tiny"]` or `defaults["real"]`."""
    for name, value in defaults["tiny" if args.tiny else "real"].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


# ---------------------------------------------------------------------------------------------------------------
# Timing and memory


@dataclass
class Timing:
    seconds: float
    peak_memory_gib: float
    result: Any = None


def timed(function: Callable[[], Any], device: torch.device) -> Timing:
    """Wall time and peak memory of `function()`."""
    memory = PeakMemory(device)
    memory.start()
    start = time.perf_counter()
    try:
        result = function()
    finally:
        peak_gib = memory.stop()
    return Timing(time.perf_counter() - start, peak_gib, result)


class PeakMemory:
    """Peak memory between `start()` and `stop()`: the CUDA allocator's peak on GPU, else the process's resident
    memory sampled every few milliseconds. `stop()` waits for queued CUDA work, so timings around it are real."""

    def __init__(self, device: torch.device):
        self.device = device
        self._stop = threading.Event()
        self._peak_bytes = 0

    @property
    def description(self) -> str:
        if self.device.type == "cuda":
            return "torch.cuda.max_memory_allocated"
        return "peak resident memory of the whole process, sampled every 5 ms"

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        process = psutil.Process()
        self._peak_bytes = process.memory_info().rss
        self._stop.clear()

        def sample():
            while not self._stop.wait(RSS_SAMPLE_SECONDS):
                self._peak_bytes = max(self._peak_bytes, process.memory_info().rss)

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def stop(self) -> float:
        """Peak in GiB."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / GIB
        self._stop.set()
        self._sampler.join()
        return max(self._peak_bytes, psutil.Process().memory_info().rss) / GIB


def measure(
    row: BenchRow, run: Callable[[], Any], device: torch.device, *, warmup: Callable[[], Any] | None = None
) -> Timing | None:
    """Time `run()` after `warmup()` (CUDA kernels, compilation) into `row`; running out of memory is recorded in
    the row instead of ending the bench, so the other rows are still measured."""
    try:
        if warmup is not None:
            row.settings["warmup_seconds"] = round(timed(warmup, device).seconds, 2)
        timing = timed(run, device)
    except RuntimeError as error:  # torch.OutOfMemoryError is one
        if not _is_out_of_memory(error):
            raise
        row.error = "out of memory"
        return None
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    row.seconds, row.peak_memory_gib = timing.seconds, timing.peak_memory_gib
    return timing


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


# ---------------------------------------------------------------------------------------------------------------
# FLOPs and MFU


def language_model_forward_flops(config: VoxtralConfig, num_tokens: int, context_length: int, logits: int) -> float:
    """Forward FLOPs of `num_tokens` tokens attending over `context_length`, with LM-head logits for `logits` of them."""
    text_config = config.get_text_config()
    per_token_with_logits = compute_flops_per_token(text_config, context_length) / 3
    lm_head = 2 * text_config.vocab_size * text_config.hidden_size
    return num_tokens * per_token_with_logits - (num_tokens - logits) * lm_head


def training_flops_per_sample(config: VoxtralConfig, sequence_length: int) -> float:
    """TRL's training FLOPs (3 x forward) for one row of `sequence_length` tokens, language model only."""
    return compute_flops_per_token(config.get_text_config(), sequence_length) * sequence_length


def sampling_flops_per_clip(config: VoxtralConfig, prompt_length: int, k: int, new_tokens: int) -> float:
    """One prefill of the prompt, then k continuations of `new_tokens` tokens (each with logits)."""
    context = prompt_length + new_tokens
    prefill = language_model_forward_flops(config, prompt_length, prompt_length, logits=1)
    return prefill + language_model_forward_flops(config, k * new_tokens, context, logits=k * new_tokens)


def peak_flops(device: torch.device, dtype: torch.dtype, peak_tflops: float | None = None) -> float | None:
    """Dense peak FLOP/s of the device at `dtype` (TRL's table), or `peak_tflops` when given."""
    if peak_tflops is not None:
        return peak_tflops * 1e12
    if device.type != "cuda":
        return None
    return get_peak_flops(torch.cuda.get_device_name(device), str(dtype).removeprefix("torch."))


# ---------------------------------------------------------------------------------------------------------------
# Report


@dataclass
class BenchRow:
    """One measured configuration. role: "baseline" (the original's settings), "fast" (the recipe's defaults on
    this device), "variant" (a fast path with one setting changed, to show what each part brings) or "vllm" (the
    same work on vLLM)."""

    name: str
    role: str
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    throughput: float | None = None
    throughput_unit: str = ""
    peak_memory_gib: float | None = None
    mfu_percent: float | None = None
    speedup: float | None = None
    error: str | None = None


def finish_rows(rows: list[BenchRow]) -> None:
    """Fill each row's speed-up over the baseline row."""
    baseline = next((row for row in rows if row.role == "baseline" and row.throughput), None)
    for row in rows:
        if baseline is not None and row.throughput:
            row.speedup = row.throughput / baseline.throughput


def environment(device: torch.device) -> dict[str, Any]:
    import peft
    import trl

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {
        "device": f"{device.type}: {name}",
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
    }


def write_report(path: str | Path, bench: str, settings: dict[str, Any], rows: list[BenchRow], device) -> Path:
    """Write the JSON report and print the table; returns the JSON path."""
    finish_rows(rows)
    report = {
        "bench": bench,
        "environment": environment(device),
        "memory_measure": PeakMemory(device).description,
        "settings": settings,
        "rows": [asdict(row) for row in rows],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    logger.info(
        "%s\n\n%s; memory: %s. JSON: %s",
        format_table(rows),
        report["environment"]["device"],
        report["memory_measure"],
        path,
    )
    return path


def format_table(rows: list[BenchRow]) -> str:
    unit = next((row.throughput_unit for row in rows if row.throughput_unit), "")
    lines = [
        f"| configuration | role | {unit} | speed-up | peak memory GiB | MFU % | seconds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.error:
            lines.append(f"| {row.name} | {row.role} | {row.error} | | | | |")
            continue
        mfu = f"{row.mfu_percent:.2f}" if row.mfu_percent is not None else "n/a"
        speedup = f"{row.speedup:.2f}x" if row.speedup is not None else "n/a"
        lines.append(
            f"| {row.name} | {row.role} | {row.throughput:,.1f} | {speedup} | "
            f"{row.peak_memory_gib:.2f} | {mfu} | {row.seconds:.2f} |"
        )
    return "\n".join(lines)
