"""RAFT sampling fast path: one encoder pass and one prefill per clip, then k rows decoded by `generate`.

Equivalence with plain `generate(num_return_sequences=k)`: identical greedy sequences, logits within float
tolerance at every step, and with a fixed seed identical sampled sequences with matching first-step scores.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import noise_clip

from evoxtral.model.collator import VoxtralTranscriptionCollator
from evoxtral.model.inference import transcribe
from evoxtral.model.sampling import generate_fanned_out, sample_transcripts

PAD, EOS = 11, 2
NEW_TOKENS = 8
OUTPUTS = dict(return_dict_in_generate=True, output_logits=True, output_scores=True)


def generation_batch(processor, clips):
    collator = VoxtralTranscriptionCollator(processor, text_column=None, padding_side="left")
    return collator([{"audio": clip} for clip in clips])


def plain_generate(model, batch, **kwargs):
    with torch.inference_mode():
        return model.generate(**batch, max_new_tokens=NEW_TOKENS, pad_token_id=PAD, eos_token_id=EOS, **kwargs)


@pytest.mark.parametrize("static_cache", [False, True], ids=["dynamic-cache", "static-cache"])
def test_greedy_fan_out_equals_generate_on_mixed_chunk_counts(tiny_model_and_processor, static_cache):
    model, processor = tiny_model_and_processor
    # 35 s is two chunks: the batch is left-padded by 375 positions for the short clips.
    batch = generation_batch(processor, [noise_clip(2.0, seed=1), noise_clip(35.0, seed=2), noise_clip(5.0, seed=3)])
    plain = plain_generate(model, batch, do_sample=False, **OUTPUTS)
    fast = generate_fanned_out(
        model,
        batch,
        k=2,
        static_cache=static_cache,
        do_sample=False,
        max_new_tokens=NEW_TOKENS,
        pad_token_id=PAD,
        eos_token_id=EOS,
        **OUTPUTS,
    )
    assert torch.equal(fast.sequences, plain.sequences.repeat_interleave(2, dim=0))
    assert len(fast.logits) == len(plain.logits) == NEW_TOKENS
    for step, (fast_logits, plain_logits) in enumerate(zip(fast.logits, plain.logits)):
        torch.testing.assert_close(
            fast_logits, plain_logits.repeat_interleave(2, dim=0), atol=1e-4, rtol=1e-4, msg=f"step {step}"
        )


def test_seeded_sampling_matches_generate_with_num_return_sequences(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    batch = generation_batch(processor, [noise_clip(2.0, seed=4), noise_clip(9.0, seed=5)])
    sampling = dict(do_sample=True, temperature=0.7, top_p=0.9, **OUTPUTS)
    torch.manual_seed(123)
    plain = plain_generate(model, batch, num_return_sequences=3, **sampling)
    torch.manual_seed(123)
    fast = generate_fanned_out(
        model, batch, k=3, max_new_tokens=NEW_TOKENS, pad_token_id=PAD, eos_token_id=EOS, **sampling
    )
    # Same processed scores (temperature, then top-p: the same tokens filtered out) at the first step ...
    plain_scores, fast_scores = plain.scores[0], fast.scores[0]
    assert torch.equal(torch.isinf(fast_scores), torch.isinf(plain_scores))
    assert torch.isinf(plain_scores).any()  # top-p did filter something, so the comparison above means something
    finite = torch.isfinite(plain_scores)
    torch.testing.assert_close(fast_scores[finite], plain_scores[finite], atol=1e-4, rtol=1e-4)
    # ... so the same draws from the same seed give the same samples, which differ between rows.
    assert torch.equal(fast.sequences, plain.sequences)
    assert len({tuple(row.tolist()) for row in fast.sequences[:3, -NEW_TOKENS:]}) > 1


def test_sample_transcripts_keeps_input_order_and_is_reproducible(tiny_model_and_processor):
    base_model, processor = tiny_model_and_processor
    from peft import LoraConfig, get_peft_model

    # RAFT samples from a LoRA model; random LoRA weights make its outputs differ from the base model's.
    model = get_peft_model(
        copy.deepcopy(base_model),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    model.train()
    clips = [noise_clip(35.0, seed=6), noise_clip(2.0, seed=7), noise_clip(3.0, seed=8)]
    # batch_size 2 over chunk counts (2, 1, 1): the two short clips are batched first, out of input order.
    common = dict(k=2, max_new_tokens=6, batch_size=2, progress=False)
    # top_p this small keeps only the most likely token: sampling turns greedy and must equal transcribe.
    near_greedy = sample_transcripts(model, processor, clips, top_p=1e-9, seed=0, **common)
    greedy = transcribe(model, processor, clips, max_new_tokens=6, progress=False)
    assert near_greedy == [[text, text] for text in greedy]
    assert model.training

    first = sample_transcripts(model, processor, clips, temperature=1.0, seed=1, **common)
    again = sample_transcripts(model, processor, clips, temperature=1.0, seed=1, **common)
    assert first == again
    assert [len(samples) for samples in first] == [2, 2, 2]
    assert first != near_greedy


def test_k_must_be_positive(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    with pytest.raises(ValueError, match="k must be at least 1"):
        sample_transcripts(model, processor, [noise_clip(1.0)], k=0, progress=False)
