"""RAFT sampling throughput: both RAFT samplers (`sampler: transformers`, `sampler: vllm`) against plain `generate`
in the same run.

Baseline: the original's sampler, `generate(num_return_sequences=k)` through `evoxtral.model.inference.transcribe`
(audio encoder and prompt prefill run k times per clip). Fast: `sample_transcripts` with the settings it picks on
this device (on CUDA: static KV cache and compiled decoding), plus the other cache setting as a variant. vLLM: the
same model exported for vLLM (`evoxtral.model.vllm_export`) and sampled by vLLM's offline engine with ``n=k`` in
the vLLM environment (`make vllm-venv`, or ``EVOXTRAL_VLLM_PYTHON``); without that environment the row is skipped
and says why. Its time counts generation only, after a warm-up, not the engine's start-up (reported apart). Random
weights, real Voxtral-Mini-3B shapes (nothing downloaded). Every sample is held to exactly `max_new_tokens`
tokens (`min_new_tokens`), so every row decodes the same tokens and tokens/s compares like with like.

    python bench/sample_throughput.py                      # real shapes, one GPU
    python bench/sample_throughput.py --num_clips 512 --batch_size 256
    python bench/sample_throughput.py --samplers vllm      # the vLLM row only
    python bench/sample_throughput.py --tiny               # a tiny Voxtral on CPU: a smoke check, not a figure
"""

from __future__ import annotations

import argparse
import gc
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from evoxtral.data.audio import num_chunks
from evoxtral.model.collator import VoxtralTranscriptionCollator
from evoxtral.model.inference import transcribe
from evoxtral.model.loading import load_model_and_processor
from evoxtral.model.sampling import sample_transcripts
from evoxtral.model.tiny import build_tiny_voxtral
from evoxtral.throughput import (
    BenchRow,
    add_bench_arguments,
    bench_model_and_processor,
    fill_shape_defaults,
    measure,
    noise_clips,
    peak_flops,
    sampling_flops_per_clip,
    write_report,
)

# The measurement: 30 s chunks (375 audio tokens), k = 4, 100 new tokens, 64 inputs per generate call.
DEFAULTS = {
    "real": dict(num_clips=256, clip_seconds=20.0, k=4, max_new_tokens=100, batch_size=128, baseline_batch_size=64),
    "tiny": dict(num_clips=4, clip_seconds=2.0, k=2, max_new_tokens=8, batch_size=2, baseline_batch_size=2),
}
SAMPLERS = ("transformers", "vllm")
# vLLM's CPU attention takes head sizes in multiples of 32: the tiny bench model has 2 heads of 32 (evoxtral-tiny has
# 4 of 16), so that every row samples the same model.
TINY_ATTENTION_HEADS = 2


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(parser, "sample_throughput")
    parser.add_argument("--num_clips", type=int, help="clips sampled per row (real: 256, tiny: 4)")
    parser.add_argument("--clip_seconds", type=float, help="length of every clip (real: 20 s = one 30 s chunk)")
    parser.add_argument("--k", type=int, help="samples per clip (real: 4)")
    parser.add_argument("--max_new_tokens", type=int, help="tokens per sample (real: 100)")
    parser.add_argument("--batch_size", type=int, help="clips per batch on the fast path (real: 128 = 512 rows)")
    parser.add_argument("--baseline_batch_size", type=int, help="clips per generate call on the baseline (real: 64)")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top_p", type=float, default=0.9)
    parser.add_argument("--device", help="default: cuda when there is one, except with --tiny")
    parser.add_argument("--dtype", help="default: bfloat16 on CUDA, float32 elsewhere")
    parser.add_argument("--attn_implementation", default="sdpa")
    parser.add_argument("--skip_baseline", action="store_true", help="fast path only (the baseline is slow)")
    parser.add_argument(
        "--samplers",
        default=",".join(SAMPLERS),
        help="comma-separated: transformers (baseline and sample_transcripts), vllm (default: both)",
    )
    args = parser.parse_args(argv)
    args.samplers = [name.strip() for name in args.samplers.split(",") if name.strip()]
    unknown = sorted(set(args.samplers) - set(SAMPLERS)) or (not args.samplers and ["(none)"])
    if unknown:
        parser.error(f"--samplers takes {' and '.join(SAMPLERS)}, got {', '.join(unknown)}")
    args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    args.tiny = args.tiny or args.device.type == "cpu"
    fill_shape_defaults(args, DEFAULTS)
    args.dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.type == "cuda" else "float32"))
    return args


def configurations(args: argparse.Namespace, model, processor) -> list[tuple[str, str, Callable]]:
    """(row name, role, run on a list of clips): the baseline `generate(num_return_sequences=k)` and
    sample_transcripts with a dynamic and a static KV cache, all sampling the same number of tokens."""
    sampling = dict(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    fixed_length = dict(min_new_tokens=args.max_new_tokens, progress=False)
    on_cuda = args.device.type == "cuda"

    def baseline(audios):
        return transcribe(
            model,
            processor,
            audios,
            batch_size=args.baseline_batch_size,
            do_sample=True,
            num_return_sequences=args.k,
            **sampling,
            **fixed_length,
        )

    def fast_path(static_cache: bool):
        def run(audios):
            return sample_transcripts(
                model,
                processor,
                audios,
                k=args.k,
                batch_size=args.batch_size,
                static_cache=static_cache,
                compile_decode=static_cache and on_cuda,
                seed=0,
                **sampling,
                **fixed_length,
            )

        return run

    # sample_transcripts' own choice is the static cache on CUDA and the dynamic one elsewhere: that row is "fast".
    static_name = "static KV cache + compiled decode" if on_cuda else "static KV cache (no compile off CUDA)"
    rows = [
        (f"generate(num_return_sequences={args.k}), {args.baseline_batch_size} clips a call", "baseline", baseline),
        (
            f"sample_transcripts, dynamic KV cache, {args.batch_size} clips a batch",
            "variant" if on_cuda else "fast",
            fast_path(False),
        ),
        (
            f"sample_transcripts, {static_name}, {args.batch_size} clips a batch",
            "fast" if on_cuda else "variant",
            fast_path(True),
        ),
    ]
    return rows[1:] if args.skip_baseline else rows


def vllm_row(args: argparse.Namespace, export, clips, work_flops: float, device_peak: float | None) -> BenchRow:
    """The vLLM sampler (what RAFT's `sampler: vllm` runs) on the export, timed after a warm-up."""
    from evoxtral.model.vllm_runner import run_vllm

    sampling = {"n": args.k, "temperature": args.temperature, "top_p": args.top_p, "seed": 0,
                "max_tokens": args.max_new_tokens, "min_tokens": args.max_new_tokens}  # fmt: skip
    warmup = {"name": "warmup", "num_clips": max(args.batch_size, args.baseline_batch_size), **sampling}
    result = run_vllm(export.model_dir, clips, [warmup, {"name": "measure", **sampling}],
                      dtype=str(args.dtype).removeprefix("torch."))  # fmt: skip
    samples = result["runs"]["measure"]
    assert all(len(clip["token_ids"]) == args.k for clip in samples), "a clip came back without k samples"
    assert all(len(ids) == args.max_new_tokens for clip in samples for ids in clip["token_ids"]), "not fixed length"
    seconds = result["generate_seconds"]["measure"]
    on_cuda = args.device.type == "cuda"
    row = BenchRow(
        name=f"vLLM offline engine (sampler: vllm), n={args.k}, every clip in one call",
        role="vllm",
        throughput_unit="tokens/s",
        seconds=seconds,
        throughput=args.num_clips * args.k * args.max_new_tokens / seconds,
        peak_memory_gib=result["cuda_memory_used_gib"] if on_cuda else result["peak_rss_gib"],
        mfu_percent=100 * work_flops / seconds / device_peak if device_peak else None,
    )
    row.settings.update(
        clips_per_second=args.num_clips / seconds,
        engine_start_seconds=round(result["load_seconds"], 2),
        warmup_seconds=round(result["generate_seconds"]["warmup"], 2),
        memory=("device memory in use (vLLM reserves its KV cache up front)" if on_cuda
                else "peak resident memory of the vLLM processes"),
    )  # fmt: skip
    return row


def transformers_rows(args, model, processor, clips, work_flops: float, device_peak: float | None) -> list[BenchRow]:
    """The baseline and `sample_transcripts` rows (RAFT's `sampler: transformers`)."""
    warmup_clips = clips[: max(args.batch_size, args.baseline_batch_size)]
    rows = []
    for name, role, run in configurations(args, model, processor):
        row = BenchRow(name=name, role=role, throughput_unit="tokens/s")
        # The warm-up loads CUDA kernels and, on the static path, compiles the decode step for this batch shape.
        timing = measure(row, partial(run, clips), args.device, warmup=partial(run, warmup_clips))
        if timing is not None:
            assert all(len(samples) == args.k for samples in timing.result), "a clip came back without k samples"
            row.throughput = args.num_clips * args.k * args.max_new_tokens / timing.seconds
            row.settings["clips_per_second"] = args.num_clips / timing.seconds
            if device_peak:
                row.mfu_percent = 100 * work_flops / timing.seconds / device_peak
        rows.append(row)
    return rows


def main(argv=None) -> Path:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        return run_bench(args, Path(workdir))


def run_bench(args: argparse.Namespace, workdir: Path) -> Path:
    from evoxtral.model.vllm_export import write_vllm_export
    from evoxtral.model.vllm_runner import find_vllm_python

    if args.tiny:
        model_dir = build_tiny_voxtral(workdir / "model", num_attention_heads=TINY_ATTENTION_HEADS)
        model, processor = load_model_and_processor(
            str(model_dir), dtype=args.dtype, device=args.device, attn_implementation=args.attn_implementation
        )
    else:
        model, processor = bench_model_and_processor(
            tiny=False,
            device=args.device,
            dtype=args.dtype,
            workdir=workdir,
            attn_implementation=args.attn_implementation,
        )
    clips = noise_clips(args.num_clips, args.clip_seconds)
    prompt_length = len(VoxtralTranscriptionCollator(processor).prompt_ids(num_chunks(len(clips[0]))))
    work_flops = args.num_clips * sampling_flops_per_clip(model.config, prompt_length, args.k, args.max_new_tokens)
    device_peak = peak_flops(args.device, args.dtype, args.peak_tflops)
    config = model.config

    rows, skipped = [], {}
    if "transformers" in args.samplers:
        rows += transformers_rows(args, model, processor, clips, work_flops, device_peak)
    export = None
    if "vllm" in args.samplers:
        if find_vllm_python() is None:
            skipped["vllm"] = "no vLLM environment (make vllm-venv, or EVOXTRAL_VLLM_PYTHON)"
            print(f"Skipping the vLLM row: {skipped['vllm']}")
        else:
            export = write_vllm_export(model, processor, workdir / "vllm-export", source="the bench model")
    # vLLM starts only once this process's copy of the model is gone, so the two never share the GPU's memory.
    del model
    gc.collect()
    if args.device.type == "cuda":
        torch.cuda.empty_cache()
    if export is not None:
        rows.append(vllm_row(args, export, clips, work_flops, device_peak))

    settings = {
        "shapes": f"tiny ({config.text_config.num_attention_heads} heads of {config.text_config.head_dim})"
        if args.tiny
        else "real (Voxtral-Mini-3B, random weights)",
        "samplers": args.samplers,
        "skipped": skipped,
        "prompt_tokens": prompt_length,
        **{key: getattr(args, key) for key in DEFAULTS["real"]},
        "temperature": args.temperature,
        "top_p": args.top_p,
        "dtype": str(args.dtype).removeprefix("torch."),
        "attn_implementation": args.attn_implementation,
        "peak_tflops": device_peak / 1e12 if device_peak else None,
    }
    return write_report(args.output, "sample_throughput", settings, rows, args.device)


if __name__ == "__main__":
    main()
