import random

import pytest

from evoxtral.scoring import tags


def test_canonical_names_aliases_and_compounds():
    assert tags.canonical_tag("Laughing") == tags.CanonicalTag("laughs", True)
    assert tags.canonical_tag("  clears   THROAT ") == tags.CanonicalTag("clears throat", True)
    # an exact entry beats the head-word rule
    assert tags.canonical_tag("laughs harder") == tags.CanonicalTag("laughs harder", True)
    assert tags.canonical_tag("laughs nervously") == tags.CanonicalTag("laughs", True, "nervously")
    assert tags.canonical_tag("strong French accent") == tags.CanonicalTag("strong french accent", False)


def test_vocabulary_covers_original_and_documented_v3_tags():
    documented = [
        "laughs harder", "starts laughing", "wheezing", "exhales", "sarcastic", "curious", "snorts",
        "mischievously", "happy", "sorrowful", "gulps", "short pause", "long pause", "sings", "applause",
    ]  # fmt: skip
    for name in list(tags.ORIGINAL_TAGS) + documented:
        assert name in tags.VOCABULARY, name
        assert tags.VOCABULARY[name].category in tags.CATEGORIES
    # no alias may shadow another canonical tag or point at two tags
    seen = {}
    for info in tags.VOCABULARY.values():
        for alias in info.aliases:
            assert alias not in tags.VOCABULARY, alias
            assert seen.setdefault(alias, info.name) == info.name


def test_extract_positions_back_to_back_and_edges():
    text = "[nervous] So... [stammers] I was thinking [sighs][laughs] maybe [pause]"
    spans = tags.extract_tags(text)
    assert [s.name for s in spans] == ["nervous", "stammers", "sighs", "laughs", "pause"]
    assert [s.word_index for s in spans] == [0, 1, 4, 4, 5]
    assert text[spans[1].start : spans[1].end] == "[stammers]"


def test_unclosed_nested_and_empty_brackets():
    assert tags.tag_names("[laughs hello there") == []
    assert tags.bracket_errors("[laughs hello there") == ["'[' at 0 is never closed"]
    # nested: only the innermost span is a well-formed tag, and the nesting is reported
    assert tags.tag_names("[a [sighs] b]") == ["sighs"]
    assert any("nested" in e for e in tags.bracket_errors("[a [sighs] b]"))
    assert tags.bracket_errors("oops] fine") == ["']' at 4 closes nothing"]
    assert tags.tag_names("[] and [  ]") == []
    assert len(tags.bracket_errors("[] and [  ]")) == 2
    assert tags.bracket_errors("[sighs] fine [laughs]") == []
    # a broken bracket is left in the plain text rather than silently dropped
    assert tags.strip_tags("[laughs hello [sighs] there") == "[laughs hello there"


def test_strip_and_plain_text():
    text = "[excited] I can't BELIEVE it... [laughs] REALLY? [sighs]"
    assert tags.strip_tags(text) == "I can't BELIEVE it... REALLY?"
    assert tags.plain_text(text) == "I can't believe it... Really?"
    assert tags.strip_tags("") == ""
    assert tags.plain_text("[pause]") == ""


def test_emphasis_policy():
    assert tags.emphasis_words("I DON'T want the TV, OK? It's SO good. I") == ["don't", "so"]
    assert tags.emphasis_words("[SHOUTS] NO") == ["no"]  # tag text is never emphasis
    assert tags.emphasis_words("ÉNORME et Énorme") == ["énorme"]
    assert tags.emphasis_words("") == []


def test_unicode_and_unknown_tags():
    spans = tags.extract_tags("[chuchote] très BIEN [laughs]")
    assert [(s.name, s.known) for s in spans] == [("chuchote", False), ("laughs", True)]
    assert tags.unknown_tags("[chuchote] très BIEN [laughs]") == ["chuchote"]


def test_segment_emotion():
    assert tags.segment_emotion("no tags here").emotion == "neutral"
    assert tags.segment_emotion("[whispers] quiet").emotion == "neutral"  # delivery without affect
    emotion = tags.segment_emotion("[laughs] yes [excited] yes [sad] no")
    assert emotion.emotion == "joy"
    assert emotion.evidence == ["laughs", "excited", "sad"]
    assert emotion.valence == pytest.approx((0.7 + 0.7 - 0.7) / 3, abs=1e-3)
    # a tie between labels goes to the latest
    assert tags.segment_emotion("[sad] a [angry] b").emotion == "anger"


def test_original_rules_keep_their_quirks():
    text = "[laughs nervously] I saw it on TV [Sighs] ok\t[pause]  DONE"
    assert tags.original_tags(text) == ["laughs nervously", "sighs", "pause"]
    assert tags.original_emphasis(text) == ["tv", "done"]
    assert tags.original_strip(text) == "I saw it on tv ok\tdone"
    # the original pattern spans an opening bracket up to the first closing one
    assert tags.original_tags("[a [b] c]") == ["a [b"]


def test_tags_in_category():
    assert "pause" in tags.tags_in_category(tags.PAUSE)
    with pytest.raises(ValueError):
        tags.tags_in_category("nope")


def test_word_index_counts_the_tag_free_words_before_each_tag():
    rng = random.Random(5)
    pieces = ["so", "I", "wor", "d", "[laughs]", "[sighs]", "[", "]", "[b c", "...", " ", "\t"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) + rng.choice(["", " "]) for _ in range(rng.randint(0, 12)))
        for span in tags.extract_tags(text):
            assert span.word_index == len(tags.strip_tags(text[: span.start]).split()), text
