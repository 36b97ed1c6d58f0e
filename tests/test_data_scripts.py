import json
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evoxtral.data.generation import composers, slices
from evoxtral.data.generation import scripts as sc
from evoxtral.scoring import tags as vocab

LEARNING_TAGS = ["whispers", "shouts", "sad", "pause", "laughs", "excited"]


def test_slices_domains_and_per_split_tag_support():
    plan = sc.generate_scripts(200, "original", seed=3, min_support=2)
    assert not plan.rejected and len(plan.scripts) == 200
    assert Counter(s.slice for s in plan.scripts) == {
        "plain": 50,
        "light": 50,
        "moderate": 50,
        "dense": 30,
        "edge": 20,
    }
    assert set(Counter(s.domain for s in plan.scripts).values()) == {25}  # 200 clips over 8 domains
    support = sc.tag_support(plan.scripts)
    assert set(support) == set(slices.SPLITS)
    for split, counter in support.items():
        assert set(counter) == set(slices.INTENDED_ORIGINAL_TAGS), split
        assert min(counter.values()) >= 2, (split, counter)
        # the rest is dealt evenly: no tag more than one occurrence above another
        assert max(counter.values()) - min(counter.values()) <= 1, (split, counter)
    for script in plan.scripts:
        density = slices.SLICES[script.slice]
        assert density.min_tags <= len(script.tags) <= density.max_tags, script
        assert sc.validate_script(script.tagged_text, allowed_tags=slices.INTENDED_ORIGINAL_TAGS) == []
        assert vocab.strip_tags(script.tagged_text) != ""


def test_edge_scripts_have_back_to_back_and_boundary_tags():
    plan = sc.generate_scripts(120, "original", seed=5)
    edge = [s for s in plan.scripts if s.slice == "edge"]
    assert len(edge) == 12
    for script in edge:
        positions = [span.word_index for span in vocab.extract_tags(script.tagged_text)]
        assert positions[0] == 0, script.tagged_text
        assert any(a == b for a, b in zip(positions, positions[1:])), script.tagged_text


def test_templates_use_emphasis_and_ellipses():
    texts = [s.tagged_text for s in sc.generate_scripts(200, "original", seed=1).scripts]
    assert sum(bool(vocab.emphasis_words(t)) for t in texts) > 40
    assert sum("..." in t for t in texts) > 20


def test_generation_is_seeded():
    first = sc.generate_scripts(60, "original", seed=7).scripts
    assert first == sc.generate_scripts(60, "original", seed=7).scripts
    assert [s.tagged_text for s in first] != [
        s.tagged_text for s in sc.generate_scripts(60, "original", seed=8).scripts
    ]


def test_stratified_split_exact_sizes_and_per_stratum_proportions():
    strata = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    labels = sc.stratified_split(strata, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0)
    assert Counter(labels) == {"train": 80, "validation": 10, "test": 10}
    for stratum, size in (("a", 50), ("b", 30), ("c", 20)):
        counts = Counter(label for label, s in zip(labels, strata) if s == stratum)
        assert abs(counts["train"] - 0.8 * size) <= 1 and abs(counts["test"] - 0.1 * size) <= 1, (stratum, counts)
    assert labels == sc.stratified_split(strata, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0)
    assert labels != sc.stratified_split(strata, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=1)


def test_infeasible_min_support_is_a_clear_error():
    with pytest.raises(ValueError, match="min_support"):
        sc.generate_scripts(20, "all", seed=0, min_support=2)


def test_validation_rejects_each_kind_of_bad_script():
    assert sc.validate_script("[sighs] Fine, let's go.", expected_tags=["sighs"]) == []
    assert any("unknown" in p for p in sc.validate_script("[strong French accent] Bonjour."))
    assert any("never closed" in p for p in sc.validate_script("[sighs Fine, let's go."))
    assert any("expected tags" in p for p in sc.validate_script("[sighs] Fine.", expected_tags=["sighs", "laughs"]))
    assert any("expected tags" in p for p in sc.validate_script("[sighs] Fine. [sighs]", expected_tags=["sighs"]))
    assert any("outside" in p for p in sc.validate_script("[sings] La la.", allowed_tags=["sighs"]))
    assert any("slice 'light'" in p for p in sc.validate_script("[sighs] A [laughs] b [gasps] c.", slice_name="light"))
    assert any("no words" in p for p in sc.validate_script("[sighs] [laughs]"))
    assert any("colour" in p for p in sc.validate_script("Fine, let's go. [whispers]"))
    assert sc.validate_script("") == ["empty script"]


def test_random_word_scripts_cannot_give_tags_away():
    plan = sc.generate_scripts(
        300, LEARNING_TAGS, seed=2, composer=composers.compose_from_random_words,
        slice_fractions={"plain": 0.2, "light": 0.4, "moderate": 0.4}, min_support=10,
    )  # fmt: skip
    bank = set(composers.neutral_words())
    assert not any(vocab.is_known_tag(word) for word in bank)
    words_by_tag: dict[str, Counter] = {}
    for script in plan.scripts:
        words = vocab.strip_tags(script.tagged_text).replace(".", "").split()
        assert set(words) <= bank, script.tagged_text
        for tag in script.tags:
            words_by_tag.setdefault(tag, Counter()).update(words)
    for counter in sc.tag_support(plan.scripts).values():
        assert min(counter[tag] for tag in LEARNING_TAGS) >= 10
    # the words next to each tag are drawn from the whole bank, not a tag-specific subset
    for tag, counter in words_by_tag.items():
        assert len(counter) > 0.8 * len(bank), tag


def test_scripts_file_keeps_every_well_formed_script_and_rejects_only_malformed_ones(tmp_path):
    path = tmp_path / "scripts.jsonl"
    records = [
        {"tagged_text": "[sighs] I can't believe it."},
        {"tagged_text": "Plain words only.", "domain": "voicemail"},
        {"tagged_text": "[nervous] So... [stammers] I was thinking [laughs nervously]", "slice": "moderate"},
        {"tagged_text": "[sighs I can't believe it."},
        {"tagged_text": "[strong accent] Hello."},
        {"text": "no tagged_text here"},
        {"tagged_text": "[sighs] one [laughs] two [gasps] three.", "slice": "light"},  # a label, kept as written
        {"tagged_text": "Fine, let's go. [sad]"},
        {"tagged_text": "[sighs] [laughs]"},
        {"tagged_text": "   "},
        {"tagged_text": "[confused] Wait, what? [scared] Oh no."},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n")
    plan = sc.load_scripts_file(path, seed=0, tag_set="original")
    kept = [s.tagged_text for s in plan.scripts]
    assert kept == [records[i]["tagged_text"] for i in (0, 1, 2, 4, 6, 7, 10)]
    assert [s.slice for s in plan.scripts] == ["light", "plain", "moderate", "light", "light", "light", "light"]
    assert [where for where, _ in plan.rejected] == [f"scripts.jsonl:{n}" for n in (12, 4, 6, 9, 10)]
    assert plan.rejected_reasons == {
        "not JSON": 1, "unbalanced brackets": 1, "no tagged_text": 1, "no words to speak": 1, "empty script": 1,
    }  # fmt: skip
    assert plan.warning_reasons == {
        sc.UNKNOWN_TAG: 1, sc.TRAILING_TAG: 1, sc.OUTSIDE_SET: 1,
    }  # fmt: skip
    warned = dict(plan.warnings)
    assert "strong accent" in warned["scripts.jsonl:5"] and "[sad]" in warned["scripts.jsonl:8"]
    assert "confused, scared" in warned["scripts.jsonl:11"]
    as_json = tmp_path / "scripts.json"
    as_json.write_text(json.dumps({"scripts": records}))
    assert [s.tagged_text for s in sc.load_scripts_file(as_json).scripts] == kept


def test_a_real_world_corpus_keeps_every_script_and_every_tag_type(tmp_path):
    """Nine- and ten-tag scripts, emotion tags at the end, tags outside the set and the vocabulary: none dropped."""
    rng = random.Random(0)
    point_tags = ["laughs", "sighs", "gasps", "pause", "clears throat", "exhales"]
    records = []
    for index in range(60):
        count = rng.choice([0, 3, 9, 10, 12])
        words = [f"word{n}" for n in range(count + 4)]
        pieces = []
        for position, word in enumerate(words):
            if position < count:
                pieces.append(f"[{rng.choice(point_tags)}]")
            pieces.append(word)
        text = " ".join(pieces) + "."
        text += [" [sad]", " [confused] really.", " [strong French accent] bonjour.", ""][index % 4]
        records.append({"id": f"r{index:03d}", "tagged_text": text})
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps(records))
    plan = sc.load_scripts_file(path, seed=1, tag_set="original")
    assert not plan.rejected and sorted(s.id for s in plan.scripts) == [r["id"] for r in records]
    assert {s.tagged_text for s in plan.scripts} == {r["tagged_text"] for r in records}
    in_file = Counter(tag for r in records for tag in vocab.tag_names(r["tagged_text"]))
    assert Counter(tag for s in plan.scripts for tag in s.tags) == in_file
    assert {"sad", "confused", "strong french accent"} <= set(in_file)
    assert {s.slice for s in plan.scripts if len(s.tags) >= 9} == {"dense"}
    assert plan.warning_reasons[sc.TRAILING_TAG] == 15 and plan.warning_reasons[sc.UNKNOWN_TAG] == 15


class _ChatServer:
    """An OpenAI-compatible /chat/completions endpoint answering from a list, then repeating its last answer."""

    def __init__(self, answers):
        self.answers, self.requests = list(answers), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                answer = outer.answers.pop(0) if len(outer.answers) > 1 else outer.answers[0]
                body = json.dumps({
                    "id": "x", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer}}],
                }).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


def test_llm_scripts_are_validated_retried_and_fall_back(monkeypatch):
    from huggingface_hub import constants

    from evoxtral.data.generation.llm import LLMComposer

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    request = composers.ComposeRequest("voicemail", ["sighs", "laughs"], "light")
    server = _ChatServer(["[sighs] Hi [giggle snort] there.", "[sighs] Hi... it's ME. [laughs]"])
    composer = LLMComposer(server.url, "any-model", max_attempts=3)
    assert composer(request, random.Random(0)) == "[sighs] Hi... it's ME. [laughs]"
    assert len(server.requests) == 2 and "unknown tags" in composer.rejected_answers[0]
    assert "invalid" in server.requests[1]["messages"][-1]["content"]

    stubborn = _ChatServer(["[sighs] only one tag."])
    composer = LLMComposer(stubborn.url, "any-model", max_attempts=2)
    plan = sc.generate_scripts(10, ["sighs", "laughs"], seed=0, composer=composer, source="llm")
    tagged = [s for s in plan.scripts if s.tags]
    assert plan.fallbacks == len([s for s in plan.scripts if s.source == "template"]) > 0
    assert all(sc.validate_script(s.tagged_text, expected_tags=s.tags) == [] for s in tagged)
    server.server.shutdown()
    stubborn.server.shutdown()


def test_every_script_source_the_configs_accept_has_a_composer_or_a_loader():
    from evoxtral.configs import SCRIPT_SOURCES

    assert set(SCRIPT_SOURCES) == set(composers.COMPOSERS) | {"llm", "file"}


def test_random_words_can_draw_from_a_small_bank():
    import random

    from evoxtral.data.generation.composers import ComposeRequest, compose_from_random_words, neutral_words

    bank = set(neutral_words(12))
    assert len(bank) == 12
    request = ComposeRequest(domain="casual", tags=["whispers", "pause"], slice="light")
    words = set()
    for seed in range(30):
        text = compose_from_random_words(request, random.Random(seed), word_bank_size=12)
        words |= {word.strip(".").lower() for word in text.split() if not word.startswith("[")}
    assert words <= bank and len(words) > 6
    with pytest.raises(ValueError, match="word_bank_size"):
        neutral_words(3)
