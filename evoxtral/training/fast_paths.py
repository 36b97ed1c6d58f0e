"""The throughput options of SFT, as dataset columns computed before training: each row's length for a
length-grouped sampler, log-mel features computed once, and the frozen audio encoder's output.

With `audio_encoder_cache` the model also takes the encoder states in place of log-mel features (see
evoxtral.model.encoder_cache); the collator reads whichever precomputed column the rows carry.
"""

from __future__ import annotations

import datasets
from trl import ModelConfig, SFTConfig

from evoxtral.configs import VoxtralSFTArguments
from evoxtral.model.collator import (
    FEATURES_COLUMN,
    VoxtralTranscriptionCollator,
    add_input_features,
    add_sequence_lengths,
)
from evoxtral.model.encoder_cache import (
    ENCODER_STATES_COLUMN,
    accept_audio_encoder_states,
    add_audio_encoder_states,
    audio_encoder,
)

# Trainer samplers that batch rows by the `length_column_name` column.
LENGTH_GROUPED_SAMPLERS = ("group_by_length", "batch_rebalance")


def add_precomputed_features(
    dataset: datasets.Dataset, sft_args: VoxtralSFTArguments, processor, num_proc: int | None
) -> datasets.Dataset:
    """Log-mel features for every row when `precompute_features` asks for them (and the rows lack them)."""
    if sft_args.precompute_features and FEATURES_COLUMN not in dataset.column_names:
        dataset = add_input_features(dataset, processor, audio_column=sft_args.audio_column, num_proc=num_proc)
    return dataset


def add_fast_path_columns(
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset | None,
    model,
    processor,
    training_args: SFTConfig,
    model_args: ModelConfig,
    sft_args: VoxtralSFTArguments,
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The columns the throughput options read: log-mel features for `precompute_features`, each row's length for
    a length-grouped sampler, and the frozen audio encoder's output for `audio_encoder_cache` (which also lets the
    model take it in place of log-mel features)."""
    num_proc = training_args.dataset_num_proc
    train_dataset, eval_dataset = (
        None if dataset is None else add_precomputed_features(dataset, sft_args, processor, num_proc)
        for dataset in (train_dataset, eval_dataset)
    )
    if training_args.train_sampling_strategy in LENGTH_GROUPED_SAMPLERS:
        collator = VoxtralTranscriptionCollator(
            processor, audio_column=sft_args.audio_column, text_column=sft_args.text_column, language=sft_args.language
        )
        # The Trainer groups evaluation batches by length too (group_by_length), so both splits need the column.
        train_dataset, eval_dataset = (
            add_sequence_lengths(
                dataset,
                collator,
                length_column=training_args.length_column_name,
                num_proc=training_args.dataset_num_proc,
            )
            if dataset is not None and training_args.length_column_name not in dataset.column_names
            else dataset
            for dataset in (train_dataset, eval_dataset)
        )
    if not sft_args.audio_encoder_cache:
        return train_dataset, eval_dataset
    if not model_args.use_peft and not sft_args.freeze_audio_encoder:
        raise ValueError(
            "audio_encoder_cache needs a frozen audio encoder: keep freeze_audio_encoder in full fine-tuning"
        )
    accept_audio_encoder_states(model)
    audio_encoder(model).to(training_args.device)  # where training will run
    with_states = []
    for dataset in (train_dataset, eval_dataset):
        if dataset is not None:
            # Under several processes the first computes and writes the cache files; the others read them.
            with training_args.main_process_first(desc="audio encoder states"):
                dataset = add_audio_encoder_states(
                    dataset,
                    model,
                    processor,
                    audio_column=sft_args.audio_column,
                    features_column=FEATURES_COLUMN if FEATURES_COLUMN in dataset.column_names else None,
                    batch_size=training_args.per_device_eval_batch_size,
                )
        with_states.append(dataset)
    return with_states[0], with_states[1]


def precomputed_features_column(dataset: datasets.Dataset) -> str | None:
    """The column the collator takes in place of decoding audio: encoder states, else log-mel features."""
    return next(
        (column for column in (ENCODER_STATES_COLUMN, FEATURES_COLUMN) if column in dataset.column_names), None
    )
