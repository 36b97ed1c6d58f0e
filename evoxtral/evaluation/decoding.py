"""What an evaluation decodes: the models (``LABEL=MODEL+ADAPTER``), the mismatched-audio control's order, and
the predictions, written to ``predictions/<label>.jsonl`` batch by batch so a killed run resumes where it stopped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from evoxtral.model import inference
from evoxtral.utils.jsonl import append_jsonl, read_jsonl, write_row

# The label of a model's run on other clips' audio (the control), next to its own label.
MISMATCHED_SUFFIX = " (other audio)"
# metrics.json's entry for the control's floor: each clip's reference scored against the reference of the clip
# whose audio the control gave it (what a model that hears perfectly scores there).
CHANCE_LABEL = "chance" + MISMATCHED_SUFFIX


@dataclass(frozen=True)
class ModelSpec:
    label: str
    model: str
    adapter: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``LABEL=MODEL`` or ``LABEL=MODEL+ADAPTER`` (MODEL: hub id, folder or built-in name)."""
        label, separator, rest = text.partition("=")
        model, _, adapter = rest.partition("+")
        if not separator or not label.strip() or not model.strip():
            raise ValueError(f"model spec {text!r}: expected LABEL=MODEL or LABEL=MODEL+ADAPTER")
        return cls(label.strip(), model.strip(), adapter.strip() or None)


def mismatched_audio_order(num_clips: int, seed: int = 0) -> list[int]:
    """A seeded derangement: clip i is decoded from clip order[i]'s audio, never its own."""
    if num_clips < 2:
        raise ValueError(f"the mismatched-audio control needs at least 2 clips, got {num_clips}")
    rng = np.random.default_rng(seed)
    while True:  # about e tries on average: a random permutation is a derangement with probability ~1/e
        order = rng.permutation(num_clips)
        if not (order == np.arange(num_clips)).any():
            return order.tolist()


def _read_done(path: Path, expected: list[dict]) -> list[dict]:
    """Rows already decoded by an earlier run of the same model on the same clips (a line cut short is dropped)."""
    done = read_jsonl(path)
    for row, want in zip(done, expected):
        if any(row.get(key) != value for key, value in want.items()):
            raise ValueError(
                f"{path} was written by a different run (clip {row.get('id')}: {row} vs {want}); "
                "use another output_dir or --overwrite"
            )
    return done[: len(expected)]


def decode_predictions(
    spec: ModelSpec,
    audios: Sequence[Any],
    rows: list[dict],
    path: Path,
    *,
    batch_size: int,
    max_new_tokens: int,
    load,
    encoder_states=None,
    **generate_kwargs,
) -> list[str]:
    """Transcribe ``audios`` (aligned with ``rows``) into ``path``, resuming it; ``load()`` gives (model, processor).

    The model is loaded only when something is left to decode. encoder_states: ``(model, processor) -> states``
    aligned with ``audios`` (the encoder then runs once per clip for every model that shares it).
    """
    done = _read_done(path, rows)
    if len(done) == len(rows):
        return [row["prediction"] for row in done]
    model, processor = load()
    states = None if encoder_states is None else encoder_states(model, processor)
    with (
        append_jsonl(path) as out,
        tqdm(total=len(rows), initial=len(done), desc=spec.label, unit="clip") as bar,
    ):
        for start in range(len(done), len(rows), batch_size):
            batch = audios[start : start + batch_size]
            texts = inference.transcribe(
                model, processor, batch, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=False,
                encoder_states=None if states is None else states[start : start + batch_size], **generate_kwargs,
            )  # fmt: skip
            for row, text in zip(rows[start : start + batch_size], texts):
                row = {**row, "prediction": text}
                write_row(out, row)
                done.append(row)
            out.flush()
            bar.update(len(texts))
    return [row["prediction"] for row in done]
