"""The RAFT reward and selection rule against hand cases from the spec."""

import random

import pytest

from evoxtral.scoring.rewards import (
    REWARD_FUNCS,
    combined_reward,
    format_reward,
    get_reward_funcs,
    reward_components,
    select_best_of_k,
)


def test_default_reward_on_a_worked_example():
    prediction, reference = "[laughs] hello world [sighs]", "[laughs] hello there"
    components = reward_components(prediction, reference)
    # WER 1/2; P = {laughs, sighs}, R = {laughs}: precision 1/2, recall 1, F1 2/3; [sighs] is a hallucinated type
    assert components == {"wer_accuracy": 0.5, "tag_f1": pytest.approx(2 / 3), "hallucination": 0.5}
    assert combined_reward(prediction, reference) == pytest.approx(0.4 * 0.5 + 0.4 * 2 / 3 + 0.2 * 0.5)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("hello there", "hello there", 1.0),  # no tags on either side: tag F1 1, hallucination 0
        ("[sighs] hello there", "hello there", 0.4),  # tags only predicted: F1 0, hallucination 1
        ("hello there", "[sighs] hello there", 0.6),  # tags only expected: F1 0, hallucination 0
        ("anything at all", "[pause]", 0.6),  # blank reference text: WER accuracy 1.0
        ("[pause]", "[pause]", 1.0),
        ("a b c d e", "x", 0.6),  # WER 5 is clipped: accuracy 0
        ("", "one two", 0.6),
    ],
)
def test_default_reward_edge_cases(prediction, reference, expected):
    assert combined_reward(prediction, reference) == pytest.approx(expected)


def test_original_reward_keeps_raw_tag_names_and_corpus_rules_merge_them():
    assert combined_reward("[laughing] hi", "[laughs] hi") == pytest.approx(0.4)
    assert combined_reward("[laughing] hi", "[laughs] hi", protocol="corpus") == pytest.approx(1.0)


def test_emphasis_and_format_rewards():
    assert REWARD_FUNCS["emphasis_f1"]("I REALLY want IT", "I REALLY want it NOW") == pytest.approx(0.5)
    assert format_reward("[laughs] hi [whispering] there") == 1.0
    assert format_reward("no tags at all") == 1.0
    assert format_reward("[laughs] hi [strong accent]") == 0.5
    assert format_reward("[laughs] hi ]") == 0.5
    assert format_reward("hi [laughs") == 0.0
    assert format_reward("[] hi") == 0.0
    weights = combined_reward("[laughs] hi [foo]", "[laughs] hi", ["format", "tag_f1"], [0.5, 0.5])
    assert weights == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)


def test_registry_lookup_errors():
    assert get_reward_funcs(["tag_f1", "format"]) == [REWARD_FUNCS["tag_f1"], REWARD_FUNCS["format"]]
    with pytest.raises(ValueError, match="unknown reward"):
        get_reward_funcs(["tag_f1", "bleu"])
    with pytest.raises(ValueError, match="2 reward names but 1 weights"):
        combined_reward("a", "a", ["tag_f1", "format"], [1.0])


def test_selection_best_of_k_and_threshold():
    selection = select_best_of_k([[0.1, 0.5], [0.9, 0.2], [0.3, 0.3], [0.7]])
    assert selection.best_index == [1, 0, 0, 0]  # ties within an input go to the first sample
    assert selection.best_reward == [0.5, 0.9, 0.3, 0.7]
    # n = 4: index floor(0.4) = 0 of the sorted bests, and the minimum itself is dropped (strictly greater)
    assert selection.threshold == 0.3
    assert selection.kept == [0, 1, 3]


def test_selection_drops_ties_at_the_threshold():
    bests = [0.2, 0.5, 0.9, 0.5, 0.8, 0.5, 0.95, 0.99, 0.7, 0.6]
    selection = select_best_of_k([[reward] for reward in bests])
    assert selection.threshold == 0.5  # sorted index floor(10 * 0.1) = 1
    assert selection.kept == [2, 4, 6, 7, 8, 9]  # 0.2 and all three 0.5s are dropped


def test_selection_reproduces_the_published_count():
    rewards = list(range(808))
    random.Random(0).shuffle(rewards)
    selection = select_best_of_k([[reward / 808, 0.0] for reward in rewards])
    assert len(selection.kept) == 727
    assert selection.threshold == 80 / 808


def test_selection_edge_cases():
    empty = select_best_of_k([])
    assert empty.kept == [] and empty.threshold is None
    assert select_best_of_k([[0.4], [0.6]], drop_fraction=0.0).kept == [1]
    with pytest.raises(ValueError, match="input 1"):
        select_best_of_k([[0.4], []])
    with pytest.raises(ValueError, match="drop_fraction"):
        select_best_of_k([[0.4]], drop_fraction=1.0)
