"""How fast cached arrays go from the dataset on disk to a collated training batch, against the old storage, in one run.

SFT's fast paths cache per-clip arrays as dataset columns: the frozen encoder's states (`audio_encoder_cache`) and
log-mel features (`precompute_features`). This bench writes the same random rows at Voxtral-Mini-3B's shapes
(states (1, 1500, 1280) float16, log-mel (1 chunk, 128, 3000) float32) in three storages, reloads each from disk as training
does (memory-mapped Arrow), and times the trainer's own input side: a torch DataLoader over the dataset with the
project's collator (`VoxtralTranscriptionCollator`), batch 16, for each number of workers.

- `lists`: an `Array3D` column read as Python lists (the storage before `.npy` bytes; the baseline);
- `numpy`: the same column with the dataset in numpy format;
- `npy`: `.npy` bytes in a binary column (evoxtral.utils.arrays: what the fast paths store now).

The GPU step it must feed: >= 45 samples/s (the SFT goal on one H100). Rows/s are printed per storage and worker
count; a GPU host has more cores than this machine, and rows/s grow with workers while cores last.

    python bench/input_pipeline.py [--rows 128] [--workers 0 2] [--caches states log_mel] [--output report.json]
    python bench/input_pipeline.py --tiny        # small shapes: a smoke check (CI)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
from torch.utils.data import DataLoader

from evoxtral.model.collator import VoxtralTranscriptionCollator
from evoxtral.model.loading import load_model_and_processor
from evoxtral.utils.arrays import encode_array, npy_bytes_feature

GPU_STEP_SAMPLES_PER_S = 45.0
BATCH_SIZE = 16
STORAGES = ("lists", "numpy", "npy")
# (shape of one row, storage dtype) at real shapes and for --tiny
SHAPES = {
    "states": {"real": ((1, 1500, 1280), "float16"), "tiny": ((1, 1500, 64), "float16")},
    "log_mel": {"real": ((1, 128, 3000), "float32"), "tiny": ((1, 128, 3000), "float32")},
}
COLUMN = "cached"


def write_storage(folder: Path, storage: str, arrays: list[np.ndarray], dtype: str) -> datasets.Dataset:
    """The rows saved to disk in one storage and loaded back memory-mapped, as the trainer reads its dataset."""
    texts = ["[whispers] random words here."] * len(arrays)
    if storage == "npy":
        features = datasets.Features({COLUMN: npy_bytes_feature(), "tagged_text": datasets.Value("string")})
        table = datasets.Dataset.from_dict({COLUMN: [encode_array(a) for a in arrays], "tagged_text": texts}, features)
    else:
        column_type = datasets.Array3D(shape=(None, *arrays[0].shape[1:]), dtype=dtype)
        features = datasets.Features({COLUMN: column_type, "tagged_text": datasets.Value("string")})
        table = datasets.Dataset.from_dict({COLUMN: arrays, "tagged_text": texts}, features)
    path = folder / storage
    table.save_to_disk(str(path))
    loaded = datasets.load_from_disk(str(path))
    return loaded.with_format("numpy", columns=[COLUMN], output_all_columns=True) if storage == "numpy" else loaded


def rows_per_second(dataset: datasets.Dataset, collator, workers: int) -> float:
    """Rows/s through DataLoader + collator over the whole dataset, after one warm-up batch (worker start-up)."""
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, collate_fn=collator, num_workers=workers, shuffle=False)
    batches = iter(loader)
    first = next(batches)
    started, rows = time.perf_counter(), 0
    for batch in batches:
        rows += batch["input_ids"].shape[0]
    elapsed = time.perf_counter() - started
    assert first["input_features"].ndim == 3
    return rows / elapsed


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--caches", nargs="+", choices=sorted(SHAPES), default=sorted(SHAPES, reverse=True))
    parser.add_argument("--tiny", action="store_true", help="small states and 48 rows: a smoke check")
    parser.add_argument("--output", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    scale = "tiny" if args.tiny else "real"
    num_rows = 48 if args.tiny else args.rows
    _, processor = load_model_and_processor("evoxtral-tiny")  # its tokenizer builds the prompts
    rng = np.random.default_rng(0)
    report = {
        "scale": scale,
        "rows": num_rows,
        "batch_size": BATCH_SIZE,
        "gpu_step_samples_per_s": GPU_STEP_SAMPLES_PER_S,
    }
    print(f"Input pipeline, {num_rows} rows, batch {BATCH_SIZE}, DataLoader + VoxtralTranscriptionCollator")
    print(f"{'cache':<8} {'row shape':<18} {'storage':<7} {'workers':>7} {'rows/s':>9} {'vs lists':>9} {'MB/s':>8}")
    for cache in args.caches:
        shape, dtype = SHAPES[cache][scale]
        arrays = [rng.standard_normal(shape).astype(dtype) for _ in range(num_rows)]
        row_megabytes = arrays[0].nbytes / 1e6
        collator = VoxtralTranscriptionCollator(processor, features_column=COLUMN)
        report[cache] = {"row_shape": list(shape), "dtype": dtype, "row_megabytes": row_megabytes, "storages": {}}
        with tempfile.TemporaryDirectory(prefix="input-pipeline-") as folder:
            for storage in STORAGES:
                dataset = write_storage(Path(folder), storage, arrays, dtype)
                report[cache]["storages"][storage] = {}
                for workers in args.workers:
                    rate = rows_per_second(dataset, collator, workers)
                    report[cache]["storages"][storage][str(workers)] = rate
                    baseline = report[cache]["storages"]["lists"][str(workers)]
                    print(
                        f"{cache:<8} {str(shape):<18} {storage:<7} {workers:>7} {rate:>9.1f} "
                        f"{rate / baseline:>8.1f}x {rate * row_megabytes:>8.0f}"
                    )
        best = max((rate, workers) for workers, rate in report[cache]["storages"]["npy"].items())
        print(
            f"{cache}: npy bytes {best[0]:.1f} rows/s with {best[1]} workers "
            f"({best[0] / GPU_STEP_SAMPLES_PER_S:.1f}x the {GPU_STEP_SAMPLES_PER_S:.0f} samples/s a GPU step needs)"
        )
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
        print(f"Wrote {args.output}")
    return report


if __name__ == "__main__":
    main()
