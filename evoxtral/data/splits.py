"""The one place a dataset split is loaded and prepared, for SFT, RAFT and evaluation alike.

A split comes from a ``save_to_disk`` folder (a DatasetDict, or a single Dataset) or a Hub dataset, or from a
mixture of several (alignment-handbook's weighted ``dataset_mixture`` or TRL's ``DatasetMixtureConfig``). Its audio column is kept undecoded (bytes or a path): the
collator decodes it with soundfile in the dataloader workers, and ``datasets`` needs no torchcodec.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import datasets
from trl import DatasetMixtureConfig, ScriptArguments

from evoxtral.configs import WeightedMixture
from evoxtral.data.audio import AudioDecodeError, decode_audio_value
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)


def load_split(
    dataset: str, split: str, max_samples: int | None = None, *, audio_column: str = "audio", **load_kwargs
) -> datasets.Dataset:
    """A split of a saved dataset folder or a Hub dataset (its first ``max_samples`` rows), audio undecoded.

    ``load_kwargs`` (name, data_dir, data_files ...) go to ``datasets.load_dataset`` for Hub datasets.
    """
    if os.path.isdir(dataset):
        data = datasets.load_from_disk(dataset)
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise ValueError(f"{dataset} has splits {list(data)}, not {split!r}")
            data = data[split]
    else:
        data = datasets.load_dataset(dataset, split=split, **load_kwargs)
    if max_samples is not None:
        data = data.select(range(min(max_samples, len(data))))
    return keep_audio_undecoded(data, audio_column)


def keep_audio_undecoded(dataset: datasets.Dataset, audio_column: str = "audio") -> datasets.Dataset:
    """The audio column as bytes/path rather than decoded arrays (a no-op when it is already so, or absent)."""
    feature = dataset.features.get(audio_column)
    if isinstance(feature, datasets.Audio) and feature.decode:
        return dataset.cast_column(audio_column, datasets.Audio(sampling_rate=feature.sampling_rate, decode=False))
    return dataset


def load_training_splits(
    script_args: ScriptArguments,
    mixture: DatasetMixtureConfig | None = None,
    seed: int = 0,
    *,
    with_eval: bool = True,
    weighted: WeightedMixture | None = None,
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """(train, eval) from ``dataset_name`` (a hub id or a ``save_to_disk`` folder) or a mixture of several.

    Two mixture shapes, both exact in their row counts:

    * ``weighted`` (alignment-handbook's ``dataset_mixture``): each dataset contributes ``int(weight * its rows)``
      rows (drawn with the mixture's seed; every row when the weight is unset), then the mixture is shuffled.
    * ``mixture`` (TRL's ``datasets:`` list): unset fractions concatenate the datasets; set ones are target shares of
      the mixture, normalised, with the mixture as large as it can be without repeating a row (TRL's documented
      rule: the first ``round(share * total)`` rows of each).

    Evaluation uses the mixture's ``test_split_size`` when set, else each source's ``dataset_test_split`` where it
    has one. ``with_eval=False`` loads no evaluation split (a run that does not evaluate).
    """
    sources = _sources(script_args, mixture, weighted)
    test_split_size = (weighted or mixture).test_split_size if (weighted or mixture) is not None else None
    trains, evaluations = [], []
    for path, split, columns, load_kwargs in sources:
        trains.append(_select(load_split(path, split, **load_kwargs), columns))
        if with_eval and test_split_size is None:
            try:
                held_out = load_split(path, script_args.dataset_test_split, **load_kwargs)
            except (KeyError, ValueError):
                logger.warning("%s has no %r split to evaluate on", path, script_args.dataset_test_split)
            else:
                evaluations.append(_select(held_out, columns))

    if weighted is not None:
        seed = weighted.seed
        parts = [weighted_rows(part, entry.weight, seed) for part, entry in zip(trains, weighted.datasets)]
        train = datasets.concatenate_datasets(parts).shuffle(seed=seed)
    else:
        fractions = [config.fraction for config in mixture.datasets] if mixture is not None else []
        train = datasets.concatenate_datasets(mixture_shares(trains, fractions)) if len(trains) > 1 else trains[0]
    if test_split_size is not None:
        split = train.train_test_split(test_size=test_split_size, seed=seed)
        return split["train"], split["test"] if with_eval else None
    return train, datasets.concatenate_datasets(evaluations) if evaluations else None


def weighted_rows(dataset: datasets.Dataset, weight: float | None, seed: int) -> datasets.Dataset:
    """``int(weight * len(dataset))`` rows of ``dataset`` (all of them when ``weight`` is None): whole copies for
    the integer part of the weight, then a seeded draw without repeats for the rest."""
    if weight is None:
        return dataset
    count = int(weight * len(dataset))
    copies, remainder = divmod(count, len(dataset)) if len(dataset) else (0, 0)
    drawn = dataset.shuffle(seed=seed).select(range(remainder))
    return datasets.concatenate_datasets([dataset] * copies + [drawn]) if copies else drawn


def mixture_shares(parts: Sequence[datasets.Dataset], fractions: Sequence[float | None]) -> list[datasets.Dataset]:
    """TRL's ``fraction`` rule: unset everywhere, every row; set everywhere, the shares normalised and the first
    ``round(share * total)`` rows of each, ``total`` the largest mixture in which no dataset repeats a row."""
    if all(fraction is None for fraction in fractions):
        return list(parts)
    if any(fraction is None for fraction in fractions):
        raise ValueError("set `fraction` for every dataset of the mixture or for none of them")
    shares = [fraction / sum(fractions) for fraction in fractions]
    total = min(len(part) / share for part, share in zip(parts, shares) if share > 0)
    return [part.select(range(round(share * total))) for part, share in zip(parts, shares)]


def load_training_rows(
    script_args: ScriptArguments,
    mixture: DatasetMixtureConfig | None = None,
    seed: int = 0,
    *,
    audio_column: str,
    text_column: str,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    with_eval: bool = True,
    weighted: WeightedMixture | None = None,
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The (train, eval) rows a training run (SFT, RAFT) reads: `load_training_splits`, then `prepare_rows` on
    each split with its own limit."""
    train, evaluation = load_training_splits(script_args, mixture, seed, with_eval=with_eval, weighted=weighted)
    columns = {"audio_column": audio_column, "text_column": text_column}
    train = prepare_rows(train, **columns, limit=max_train_samples)
    if evaluation is not None:
        evaluation = prepare_rows(evaluation, **columns, limit=max_eval_samples)
    return train, evaluation


def _sources(
    script_args: ScriptArguments, mixture: DatasetMixtureConfig | None, weighted: WeightedMixture | None = None
) -> list[tuple]:
    """(path, split, columns, load_kwargs) of every dataset a run trains on."""
    if weighted is not None:
        if mixture is not None and mixture.datasets:
            raise ValueError("set dataset_mixture or a `datasets:` mixture, not both")
        return [(entry.id, entry.split, entry.columns, {"name": entry.config}) for entry in weighted.datasets]
    if mixture is not None and mixture.datasets:
        return [
            (
                config.path,
                config.split,
                config.columns,
                dict(name=config.name, data_dir=config.data_dir, data_files=config.data_files),
            )
            for config in mixture.datasets
        ]
    if script_args.dataset_name:
        return [
            (script_args.dataset_name, script_args.dataset_train_split, None, {"name": script_args.dataset_config})
        ]
    raise ValueError("set dataset_name (a hub id or a save_to_disk folder), dataset_mixture or a `datasets:` mixture")


def _select(dataset: datasets.Dataset, columns: list[str] | None) -> datasets.Dataset:
    return dataset.select_columns(columns) if columns else dataset


def prepare_rows(
    dataset: datasets.Dataset, *, audio_column: str, text_column: str, limit: int | None = None
) -> datasets.Dataset:
    """The rows a stage trains or scores on: both columns present (else a KeyError naming them), the first
    ``limit`` rows, audio undecoded."""
    missing = {audio_column, text_column} - set(dataset.column_names)
    if missing:
        raise KeyError(f"dataset lacks column(s) {sorted(missing)}; it has {dataset.column_names}")
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return keep_audio_undecoded(dataset, audio_column)


def clip_ids(dataset: datasets.Dataset, id_column: str) -> list[str]:
    """Each row's id from ``id_column``, or its position when the dataset has no such column."""
    if id_column in dataset.column_names:
        return list(dataset[id_column])
    return [str(index) for index in range(len(dataset))]


def decodable_clips(audios: Sequence[Any], ids: Sequence[str]) -> tuple[list[int], list[str]]:
    """Positions of the clips whose audio decodes; each one that does not is logged and described in the second
    list ("clip <id>: <why>"), for a report to list."""
    good, problems = [], []
    for index, (audio, clip_id) in enumerate(zip(audios, ids)):
        try:
            decode_audio_value(audio)
        except AudioDecodeError as error:
            problems.append(f"clip {clip_id}: {error}")
            logger.warning("Skipping %s", problems[-1])
        else:
            good.append(index)
    return good, problems
