"""Hand-computed cases for the metric core, both protocols, every edge case of the published spec."""

import random

import jiwer
import pytest

from evoxtral.scoring import tags
from evoxtral.scoring.evoxtral_bench import (
    compute_metrics,
    normalize_transcript,
    precision_recall_f1,
    sample_scores,
    score_samples,
)


def evoxtral(prediction, reference):
    return sample_scores(prediction, reference, protocol="evoxtral")


# --- The published protocol, per sample ---------------------------------------------------------------------------


def test_evoxtral_no_tags_on_either_side_scores_one():
    scores = evoxtral("hello world", "hello world")
    assert (scores.tag_precision, scores.tag_recall, scores.tag_f1) == (1.0, 1.0, 1.0)
    assert scores.tag_hallucination_rate == 0.0
    assert (scores.emphasis_precision, scores.emphasis_recall, scores.emphasis_f1) == (1.0, 1.0, 1.0)
    assert (scores.wer, scores.cer) == (0.0, 0.0)


def test_evoxtral_exactly_one_side_tagged_scores_zero():
    missed = evoxtral("hello world", "[sighs] hello world")
    assert (missed.tag_precision, missed.tag_recall, missed.tag_f1, missed.tag_hallucination_rate) == (0, 0, 0, 0)
    invented = evoxtral("[sighs] hello world", "hello world")
    assert (invented.tag_precision, invented.tag_recall, invented.tag_f1) == (0.0, 0.0, 0.0)
    assert invented.tag_hallucination_rate == 1.0


def test_evoxtral_repeated_tags_are_a_multiset():
    scores = evoxtral("[laughs] a [laughs] b [laughs]", "[laughs] a [laughs] b [sighs]")
    # P = {laughs: 3}, R = {laughs: 2, sighs: 1}: tp 2, fp 1, fn 1
    assert scores.tag_precision == pytest.approx(2 / 3)
    assert scores.tag_recall == pytest.approx(2 / 3)
    assert scores.tag_f1 == pytest.approx(2 / 3)
    # the extra [laughs] is a wrong count, not a hallucinated type
    assert scores.tag_hallucination_rate == 0.0
    typed = evoxtral("[laughs] a [gasps] b [gasps]", "[laughs] a b")
    assert typed.tag_hallucination_rate == pytest.approx(2 / 3)


def test_evoxtral_raw_bracket_extraction_merges_nothing():
    assert evoxtral("[Laughs] hi", "[laughs] hi").tag_f1 == 1.0  # only lowercased
    compound = evoxtral("[laughs nervously] hi", "[laughs] hi")
    assert compound.tag_f1 == 0.0 and compound.tag_hallucination_rate == 1.0
    assert evoxtral("[laughing] hi", "[laughs] hi").tag_f1 == 0.0  # no aliases
    assert evoxtral("[ laughs] hi", "[laughs] hi").tag_f1 == 0.0  # no trimming


def test_evoxtral_caps_rule_counts_acronyms():
    scores = evoxtral("I saw it on TV", "I saw it on tv")
    assert scores.emphasis_f1 == 0.0  # "TV" is emphasis in the original, the reference has none
    assert scores.wer == 0.0  # strip lowercases CAPS words
    partial = evoxtral("I REALLY REALLY want IT", "I REALLY want it NOW")
    # E_p = [really, really, it], E_r = [really, now]: one in common
    assert partial.emphasis_precision == pytest.approx(1 / 3)
    assert partial.emphasis_recall == pytest.approx(1 / 2)
    assert partial.emphasis_f1 == pytest.approx(0.4)
    # "I" is one letter: never emphasis; "Hello" is not all capitals
    assert evoxtral("I said Hello", "I said hello").emphasis_f1 == 1.0


def test_evoxtral_empty_prediction_and_blank_reference():
    empty = evoxtral("", "Hello there [laughs]")
    assert (empty.wer, empty.cer) == (1.0, 1.0)
    assert empty.tag_f1 == 0.0 and empty.tag_hallucination_rate == 0.0
    blank = evoxtral("uh oh", "[pause]  ")
    assert blank.wer is None and blank.cer is None
    both = evoxtral("", "")
    assert both.wer is None and both.tag_f1 == 1.0 and both.emphasis_f1 == 1.0


def test_evoxtral_wer_and_cer_match_jiwer_on_stripped_text():
    random.seed(3)
    words = ["so", "I", "REALLY", "think", "OK", "maybe...", "[laughs]", "[sighs] ", "[pause]", "\t", "you?"]
    for _ in range(200):
        prediction = " ".join(random.choices(words, k=random.randint(0, 9)))
        reference = " ".join(random.choices(words, k=random.randint(1, 9)))
        scores = evoxtral(prediction, reference)
        stripped_reference = tags.original_strip(reference)
        if not stripped_reference.strip():
            assert scores.wer is None
            continue
        assert scores.wer == pytest.approx(jiwer.wer(stripped_reference, tags.original_strip(prediction)))
        assert scores.cer == pytest.approx(jiwer.cer(stripped_reference, tags.original_strip(prediction)))


# --- The published protocol, over a corpus ------------------------------------------------------------------------


def test_evoxtral_averages_per_sample_and_skips_blank_references_for_wer():
    predictions = ["a b", "x y z", "one two three four"]
    references = ["a b", "[pause]", "one two three five"]
    result = compute_metrics(predictions, references, protocol="evoxtral")
    assert result["num_samples"] == 3 and result["num_wer_samples"] == 2
    assert result["wer"] == pytest.approx((0.0 + 0.25) / 2)
    # tag F1 per sample: 1 (no tags anywhere), 0 (reference tag missed), 1 -> mean 2/3
    assert result["tag_f1"] == pytest.approx(2 / 3)
    assert compute_metrics(["x"], ["[pause]"], protocol="evoxtral")["wer"] == 0.0  # empty list averages to 0
    nothing = compute_metrics([], [], protocol="evoxtral")
    assert nothing["num_samples"] == 0 and nothing["tag_f1"] == 0.0 and nothing["wer"] == 0.0


def test_tagless_model_scores_share_of_tagless_clips_only_under_evoxtral():
    # The published base row (22.0 / 22.0 / 22.0, 0% hallucination) is what a model that never tags gets.
    references = ["[sighs] one", "two [laughs]", "three", "[pause] four", "five six"]
    predictions = ["one", "two", "three", "four", "five six"]
    published = compute_metrics(predictions, references, protocol="evoxtral")
    share_tagless = 2 / 5
    assert published["tag_precision"] == pytest.approx(share_tagless)
    assert published["tag_recall"] == pytest.approx(share_tagless)
    assert published["tag_f1"] == pytest.approx(share_tagless)
    assert published["tag_hallucination_rate"] == 0.0
    corpus = compute_metrics(predictions, references)
    assert (corpus["tag_precision"], corpus["tag_recall"], corpus["tag_f1"]) == (0.0, 0.0, 0.0)


def test_evoxtral_pooled_per_tag_table():
    predictions = ["[laughs] a [laughs] b", "[sighs] c", "[laughs nervously] d"]
    references = ["[laughs] a b", "[sighs] c [sighs]", "[laughs] d"]
    table = compute_metrics(predictions, references, protocol="evoxtral")["per_tag"]
    # laughs: tp 1 (sample 1), fp 1 (sample 1), fn 1 (sample 3); sighs: tp 1, fn 1; "laughs nervously": fp 1
    assert table["laughs"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert table["sighs"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert table["laughs nervously"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert list(table)[-1] == "laughs nervously"  # ordered by support


def test_evoxtral_rejects_collar():
    with pytest.raises(ValueError, match="collar"):
        compute_metrics(["a"], ["a"], protocol="evoxtral", collar=1)


# --- The corpus protocol -----------------------------------------------------------------------------------------


def test_corpus_pools_counts_over_the_corpus():
    predictions = ["[laughs] a", "b", "[gasps] [gasps] c"]
    references = ["[laughs] a", "[sighs] b", "[gasps] c"]
    result = compute_metrics(predictions, references)
    # tp 2 (laughs, gasps), fp 1 (second gasps), fn 1 (sighs)
    assert result["tag_precision"] == pytest.approx(2 / 3)
    assert result["tag_recall"] == pytest.approx(2 / 3)
    assert result["tag_f1"] == pytest.approx(2 / 3)
    assert result["num_predicted_tags"] == 3 and result["num_reference_tags"] == 3
    # the extra [gasps] is a false discovery but not a hallucinated type
    assert result["tag_false_discovery_rate"] == pytest.approx(1 / 3)
    assert result["tag_hallucination_rate"] == 0.0


def test_corpus_names_tags_through_the_vocabulary():
    result = compute_metrics(
        ["[laughing] hi [laughs nervously] yo [Clears  Throat]"], ["[laughs] hi [laughs] yo [clears throat]"]
    )
    assert result["tag_f1"] == 1.0
    assert set(result["per_tag"]) == {"laughs", "clears throat"}
    unknown = compute_metrics(["[strong accent] hi"], ["hi"])
    assert unknown["per_tag"]["strong accent"]["support"] == 0
    assert unknown["tag_hallucination_rate"] == 1.0 and unknown["tag_false_discovery_rate"] == 1.0


def test_corpus_emphasis_ignores_acronyms_and_pools():
    result = compute_metrics(
        ["I saw it on TV", "it was SO good, REALLY"], ["I saw it on tv", "it was SO good, really"]
    )
    # TV is an acronym; E_p = [so, really], E_r = [so]: tp 1, fp 1, fn 0
    assert result["emphasis_precision"] == 0.5
    assert result["emphasis_recall"] == 1.0
    assert result["emphasis_f1"] == pytest.approx(2 / 3)


def test_corpus_wer_normalisation_and_none():
    assert normalize_transcript("[laughs] Hello, WORLD... don't—stop!  ") == "hello world dont stop"
    normalized = compute_metrics(["hello, WORLD... don't"], ["Hello world dont"])
    assert normalized["wer"] == 0.0 and normalized["cer"] == 0.0
    raw = compute_metrics(["hello, WORLD... don't"], ["Hello world dont"], normalize=False)
    assert raw["wer"] == 1.0


def test_corpus_wer_pools_like_jiwer_on_lists():
    predictions = ["[sighs] a b c", "d e", "x y", ""]
    references = ["a b", "[pause]", "x z w", "q r"]
    result = compute_metrics(predictions, references, normalize=False)
    stripped = [tags.strip_tags(text) for text in references], [tags.strip_tags(text) for text in predictions]
    assert result["wer"] == pytest.approx(jiwer.wer(*stripped))
    assert result["cer"] == pytest.approx(jiwer.cer(*stripped))
    # 1 insertion + 2 insertions (blank reference) + 2 substitution/deletion + 2 deletions over 7 reference words
    assert result["wer"] == pytest.approx(7 / 7)


def test_corpus_macro_f1_respects_min_support():
    predictions = ["[laughs] a", "[laughs] b", "c", "[sighs] d"]
    references = ["[laughs] a", "[laughs] b", "[laughs] c", "e"]
    # laughs: tp 2, fn 1 -> f1 0.8, support 3; sighs: fp 1 -> f1 0, support 0
    assert compute_metrics(predictions, references, min_support=1)["tag_macro_f1"] == pytest.approx(0.8)
    assert compute_metrics(predictions, references, min_support=4)["tag_macro_f1"] is None
    mixed = compute_metrics(predictions + ["f"], references + ["[gasps] f"], min_support=1)
    assert mixed["tag_macro_f1"] == pytest.approx(0.4)  # laughs 0.8, gasps 0.0


def test_corpus_edge_cases():
    assert compute_metrics([""], [""])["tag_f1"] == 1.0
    assert compute_metrics([""], [""])["wer"] == 0.0
    assert compute_metrics(["a b"], [""])["wer"] == 2.0  # no reference words: jiwer's insertion count
    empty = compute_metrics([], [])
    assert empty["num_samples"] == 0 and empty["tag_f1"] is None and empty["wer"] is None
    assert compute_metrics([None], ["[sighs]"])["tag_recall"] == 0.0


# --- Position-aware matching --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("collar", "expected_f1"), [(None, 1.0), (0, 0.0), (1, 0.0), (2, 1.0)])
def test_collar_requires_the_tag_near_its_reference_position(collar, expected_f1):
    result = compute_metrics(["one two [laughs] three four"], ["[laughs] one two three four"], collar=collar)
    assert result["tag_f1"] == expected_f1


def test_collar_positions_follow_the_word_alignment():
    # an inserted word shifts raw indices by one; after alignment the tag stands in the same gap
    assert compute_metrics(["x a b c [sighs] d"], ["a b c [sighs] d"], collar=0)["tag_f1"] == 1.0
    # words deleted around the tag: the prediction's gap spans the deleted stretch
    assert compute_metrics(["a [sighs] e"], ["a b c d [sighs] e"], collar=0)["tag_f1"] == 1.0
    assert compute_metrics(["a e [sighs]"], ["a b c d [sighs] e"], collar=0)["tag_f1"] == 0.0
    # normalisation applies to the alignment too: "Hello," aligns with "hello"
    assert compute_metrics(["Hello, [sighs] WORLD"], ["hello [sighs] world"], collar=0)["tag_f1"] == 1.0


def test_collar_matches_repeated_tags_one_to_one():
    reference = "[laughs] a b c d e f [laughs] g"
    result = compute_metrics(["a [laughs] b c d e f g [laughs]"], [reference], collar=1)
    assert result["tag_f1"] == 1.0
    one_wrong = compute_metrics(["[laughs] [laughs] a b c d e f g"], [reference], collar=1)
    assert one_wrong["tag_precision"] == 0.5 and one_wrong["tag_recall"] == 0.5


def test_collar_validation():
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="collar"):
            compute_metrics(["a"], ["a"], collar=bad)


# --- Bootstrap, inputs, helpers -----------------------------------------------------------------------------------


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    predictions = ["[laughs] a b", "c", "[sighs] d e", "f [gasps]", "g h", "[pause] i"] * 3
    references = ["[laughs] a b", "[sighs] c", "d e", "f [gasps]", "g x", "[pause] i"] * 3
    for protocol in ("corpus", "evoxtral"):
        first = compute_metrics(predictions, references, protocol=protocol, bootstrap=200, seed=7)
        again = compute_metrics(predictions, references, protocol=protocol, bootstrap=200, seed=7)
        other = compute_metrics(predictions, references, protocol=protocol, bootstrap=200, seed=8)
        assert first == again
        assert first["tag_f1_ci"] != other["tag_f1_ci"]
        low, high = first["tag_f1_ci"]
        assert low < first["tag_f1"] < high
        assert "per_tag_ci" not in first
    assert "tag_f1_ci" not in compute_metrics(predictions, references)


def test_bootstrap_of_identical_samples_has_zero_width():
    result = compute_metrics(["[laughs] a b"] * 5, ["[laughs] a c"] * 5, bootstrap=50)
    assert result["wer_ci"] == [0.5, 0.5]
    assert result["tag_f1_ci"] == [1.0, 1.0]


def test_input_validation():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        compute_metrics(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="protocol"):
        compute_metrics(["a"], ["a"], protocol="nope")
    with pytest.raises(TypeError, match="prediction 0"):
        compute_metrics([3], ["a"])
    with pytest.raises(ValueError, match="bootstrap"):
        compute_metrics(["a"], ["a"], bootstrap=-1)


def test_precision_recall_f1_convention():
    assert [float(x) for x in precision_recall_f1(0, 0, 0)] == [1.0, 1.0, 1.0]
    assert [float(x) for x in precision_recall_f1(0, 2, 0)] == [0.0, 0.0, 0.0]
    assert [float(x) for x in precision_recall_f1(0, 0, 2)] == [0.0, 0.0, 0.0]
    precision, recall, f1 = precision_recall_f1(1, 1, 3)
    assert (float(precision), float(recall), float(f1)) == (0.5, 0.25, pytest.approx(1 / 3))


def test_score_samples_corpus_rules_per_clip():
    scores = score_samples(["[laughing] Hello", "hi"], ["[laughs] hello", ""], protocol="corpus")
    assert scores[0].tag_f1 == 1.0 and scores[0].wer == 0.0
    assert scores[1].wer is None  # no reference words
    assert scores[0].to_dict()["tag_f1"] == 1.0
