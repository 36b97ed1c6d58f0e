"""The transcription collator: prompt, target, masks, padding, multi-chunk audio, precomputed features."""

from __future__ import annotations

import logging

import datasets
import pytest
import torch
from conftest import encode, noise_clip

from evoxtral.model.collator import (
    IGNORE_INDEX,
    VoxtralTranscriptionCollator,
    add_input_features,
    add_sequence_lengths,
)

AUDIO, BEGIN_AUDIO, PAD, EOS = 24, 25, 11, 2


def rows():
    return [
        {"audio": {"array": noise_clip(3.0, seed=1), "sampling_rate": 16000}, "tagged_text": "[laughs] Oh, REALLY?"},
        {"audio": {"array": noise_clip(40.0, seed=2), "sampling_rate": 16000}, "tagged_text": "Fine."},
    ]


@pytest.fixture(scope="module")
def training_batch(tiny_processor):
    return VoxtralTranscriptionCollator(tiny_processor)(rows())


def test_shapes_and_chunks_for_a_clip_over_30_seconds(training_batch):
    assert training_batch["input_features"].shape == (1 + 2, 128, 3000)
    assert training_batch["input_features"].dtype == torch.float32
    assert (training_batch["input_ids"] == AUDIO).sum(dim=1).tolist() == [375, 750]
    assert (training_batch["input_ids"] == BEGIN_AUDIO).sum(dim=1).tolist() == [1, 1]
    assert (
        training_batch["input_ids"].shape == training_batch["labels"].shape == training_batch["attention_mask"].shape
    )


def test_labels_are_the_target_and_eos_only(training_batch, tiny_processor):
    for row, example in enumerate(rows()):
        target = tiny_processor.tokenizer.encode(example["tagged_text"], add_special_tokens=False) + [EOS]
        labels = training_batch["labels"][row]
        assert labels[labels != IGNORE_INDEX].tolist() == target
        # The learned tokens sit right after the prompt ([TRANSCRIBE], id 34), in the input too.
        length = int(training_batch["attention_mask"][row].sum())
        assert training_batch["input_ids"][row, length - len(target) : length].tolist() == target
        assert training_batch["input_ids"][row, length - len(target) - 1] == 34
    assert not (training_batch["labels"] == AUDIO).any()


def test_right_padding_is_masked(training_batch):
    short = 0  # the 3 s clip has 375 fewer audio tokens
    length = int(training_batch["attention_mask"][short].sum())
    assert training_batch["attention_mask"][short, :length].all()
    assert not training_batch["attention_mask"][short, length:].any()
    assert (training_batch["input_ids"][short, length:] == PAD).all()
    assert (training_batch["labels"][short, length:] == IGNORE_INDEX).all()


def test_prompt_and_features_equal_the_processors_own(training_batch, tiny_processor):
    for row, example in enumerate(rows()):
        request = tiny_processor.apply_transcription_request(
            audio=example["audio"]["array"], model_id="voxtral", language="en", sampling_rate=16000, format="wav"
        )
        prompt = request["input_ids"][0]
        assert training_batch["input_ids"][row, : len(prompt)].tolist() == prompt.tolist()
        chunks = slice(0, 1) if row == 0 else slice(1, 3)
        assert torch.allclose(training_batch["input_features"][chunks], request["input_features"], atol=1e-5)


def test_generation_batches_are_left_padded_without_labels(tiny_processor):
    collator = VoxtralTranscriptionCollator(tiny_processor, text_column=None, padding_side="left")
    batch = collator(rows())
    assert "labels" not in batch
    assert (batch["input_ids"][:, -1] == 34).all()  # every prompt ends at the last column
    assert not batch["attention_mask"][0, :375].any() and batch["attention_mask"][1].all()


def test_literal_control_strings_in_a_transcript_stay_text(tiny_processor):
    batch = VoxtralTranscriptionCollator(tiny_processor)(
        [{"audio": noise_clip(1.0), "tagged_text": "He typed [AUDIO] and [INST] by hand"}]
    )
    labels = batch["labels"][0]
    assert not (labels[labels != IGNORE_INDEX] == AUDIO).any()
    assert (batch["input_ids"][0] == AUDIO).sum() == 375


def test_undecodable_rows_are_reported_and_skipped(tiny_processor, caplog):
    collator = VoxtralTranscriptionCollator(tiny_processor)
    good = {"audio": {"bytes": encode(noise_clip(1.0), 16000), "path": None}, "tagged_text": "ok"}
    bad = {"audio": {"bytes": b"not audio at all" * 8, "path": None}, "tagged_text": "lost"}
    with caplog.at_level(logging.WARNING):
        batch = collator([bad, good])
    assert batch["input_ids"].shape[0] == 1 and "does not decode" in caplog.text
    with pytest.raises(ValueError, match="none of the 1 rows"):
        collator([bad])


def test_precomputed_features_give_the_same_batch(tiny_processor):
    table = datasets.Dataset.from_dict(
        {
            "audio": [{"bytes": encode(noise_clip(s, seed=s), 16000), "path": None} for s in (2, 31)],
            "tagged_text": ["[sighs] Two.", "Thirty one."],
        }
    ).cast_column("audio", datasets.Audio(sampling_rate=16000, decode=False))
    with_features = add_input_features(table, tiny_processor)
    on_the_fly = VoxtralTranscriptionCollator(tiny_processor)(list(table))
    precomputed = VoxtralTranscriptionCollator(tiny_processor, features_column="input_features")(
        [{"input_features": row["input_features"], "tagged_text": row["tagged_text"]} for row in with_features]
    )
    assert set(on_the_fly) == set(precomputed)
    for name in on_the_fly:
        assert torch.allclose(on_the_fly[name].float(), precomputed[name].float(), atol=1e-6), name


def test_sequence_lengths_are_the_collated_lengths(tiny_processor):
    table = datasets.Dataset.from_dict(
        {
            "audio": [{"bytes": encode(noise_clip(s, seed=s), 16000), "path": None} for s in (1, 31)]
            + [{"bytes": b"not audio", "path": None}],
            "tagged_text": ["[sighs] One.", "Thirty one, and [laughs] a longer transcript.", "lost"],
        }
    ).cast_column("audio", datasets.Audio(sampling_rate=16000, decode=False))
    collator = VoxtralTranscriptionCollator(tiny_processor)
    lengths = add_sequence_lengths(table, collator)["length"]
    assert lengths[:2] == [int(collator([row])["attention_mask"].sum()) for row in list(table)[:2]]
    assert lengths[1] > lengths[0] + 375 and lengths[2] == 0  # a second chunk; undecodable audio
