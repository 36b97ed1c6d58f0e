"""Batched transcription: left padding does not change what each clip decodes to; sampling gives k per input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import encode, noise_clip

from evoxtral.data.audio import AudioDecodeError
from evoxtral.model.inference import transcribe


def test_batched_greedy_equals_one_at_a_time(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    clips = [noise_clip(2.0, seed=3), noise_clip(35.0, seed=4), encode(noise_clip(1.0, seed=5), 16000)]
    batched = transcribe(model, processor, clips, batch_size=3, max_new_tokens=6, progress=False)
    single = [transcribe(model, processor, [clip], max_new_tokens=6, progress=False)[0] for clip in clips]
    assert batched == single
    assert all(isinstance(text, str) and text for text in batched)


def test_sampling_returns_k_transcripts_per_input_and_restores_train_mode(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    model.train()
    try:
        samples = transcribe(
            model,
            processor,
            [noise_clip(1.0, seed=6), noise_clip(1.0, seed=7)],
            max_new_tokens=6,
            do_sample=True,
            temperature=1.0,
            num_return_sequences=3,
            progress=False,
        )
        assert model.training
    finally:
        model.eval()
    assert [len(group) for group in samples] == [3, 3]
    assert len(set(samples[0])) > 1  # random weights at temperature 1: the three samples differ


def test_bad_audio_is_reported(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    with pytest.raises(AudioDecodeError, match="empty"):
        transcribe(model, processor, [b""], progress=False)


def test_k_copies_of_a_multi_chunk_clip_each_hear_the_whole_clip(tiny_model_and_processor):
    # generate(num_return_sequences=k) alone would hand copy 0 the first chunk twice and copy 1 the second chunk
    # twice; a loud first chunk and a silent second one make that visible in greedy output.
    model, processor = tiny_model_and_processor
    long_clip = np.concatenate([noise_clip(30.0, seed=8) * 8, np.zeros(16000 * 10, dtype=np.float32)])
    clips = [noise_clip(2.0, seed=9), long_clip]
    single = [transcribe(model, processor, [clip], max_new_tokens=8, progress=False)[0] for clip in clips]
    copies = transcribe(model, processor, clips, max_new_tokens=8, num_return_sequences=2, progress=False)
    assert copies == [[text, text] for text in single]


def test_shared_encoder_states_give_the_same_transcripts_and_run_the_encoder_once(tiny_model_and_processor):
    from evoxtral.model.encoder_cache import SharedEncoderStates, audio_encoder

    model, processor = tiny_model_and_processor
    clips = [noise_clip(2.0, seed=6), noise_clip(33.0, seed=7), noise_clip(4.0, seed=8)]
    live = transcribe(model, processor, clips, batch_size=2, max_new_tokens=6, progress=False)
    shared = SharedEncoderStates(clips, batch_size=2)
    calls = []
    hook = audio_encoder(model).conv1.register_forward_hook(lambda *_: calls.append(1))
    try:
        states = shared.states(model, processor)
        assert [array.shape[0] for array in states] == [1, 2, 1]  # chunks per clip
        cached = transcribe(
            model, processor, clips, batch_size=2, max_new_tokens=6, progress=False, encoder_states=states
        )
        reordered = transcribe(
            model, processor, clips[::-1], batch_size=2, max_new_tokens=6, progress=False,
            encoder_states=shared.states(model, processor)[::-1],
        )  # fmt: skip
    finally:
        hook.remove()
    assert len(calls) == 2  # two batches of clips, once, for all three decodes
    assert cached == live
    assert reordered == live[::-1]
    with pytest.raises(ValueError, match="encoder states for"):
        transcribe(model, processor, clips, encoder_states=states[:2], progress=False)
