"""Composers: the words of a script written around its planned tag list, offline from the domain's sentence bank
or from random neutral words (for scripts whose text must not give a tag away). The LLM composer (llm.py) answers
the same ComposeRequest."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from evoxtral.data.generation.slices import SLICES, is_scoped
from evoxtral.data.generation.templates import DOMAIN_SENTENCES, FILLERS, NEUTRAL_WORDS
from evoxtral.scoring import tags as vocab


@dataclass
class ComposeRequest:
    """What a composer must write: a script in ``domain`` carrying exactly ``tags``."""

    domain: str
    tags: list[str]
    slice: str

    @property
    def edge(self) -> bool:
        return SLICES[self.slice].edge


Composer = Callable[[ComposeRequest, random.Random], str]

_SLOT = re.compile(r"\{(\w+)\}")

_LETTERS = re.compile(r"[A-Za-z']+")


def _emphasise(words: list[str], rng: random.Random) -> None:
    """CAPITALISE one lower-case content word of a sentence (not its first), as v3 scripts do for stress."""
    candidates = []
    for i, word in enumerate(words[1:], start=1):
        match = _LETTERS.search(word)
        if match and len(match.group()) >= 4 and match.group().islower() and "'" not in match.group():
            if vocab.is_emphasis_word(match.group().upper()):
                candidates.append(i)
    if candidates:
        i = rng.choice(candidates)
        letters = _LETTERS.search(words[i]).group()
        words[i] = words[i].replace(letters, letters.upper(), 1)


def _trail_off(words: list[str], rng: random.Random) -> None:
    """An ellipsis, either trailing the sentence or after a hesitant first word ("So... I was")."""
    if rng.random() < 0.5 and words[-1].endswith("."):
        words[-1] = words[-1].rstrip(".") + "..."
    elif len(words) > 3:
        words[0] = words[0].rstrip(",") + "..."


def _place_tags(
    sentences: list[list[str]], tag_list: list[str], edge: bool, rng: random.Random
) -> dict[int, list[str]]:
    """Word positions for each tag (position i = before word i; len(words) = after the last word).

    Scoped tags open sentences (or, past one per sentence, a later word); point tags fall anywhere between words.
    Edge scripts put a tag on the first boundary, two tags back to back, and a point tag after the last word
    when they have one.
    """
    starts, position = [], 0
    for sentence in sentences:
        starts.append(position)
        position += len(sentence)
    n_words = position
    scoped = [t for t in tag_list if is_scoped(t)]
    point = [t for t in tag_list if not is_scoped(t)]
    placed: dict[int, list[str]] = {}
    free_starts = starts[:]
    rng.shuffle(free_starts)
    inner = [i for i in range(1, n_words) if i not in starts]
    rng.shuffle(inner)
    for tag in scoped:
        spot = free_starts.pop() if free_starts else (inner.pop() if inner else rng.randrange(n_words))
        placed.setdefault(spot, []).append(tag)
    if edge and point:
        placed.setdefault(n_words, []).append(point.pop())
    for tag in point:
        spots = [i for i in range(1, n_words + 1) if i not in placed] or list(range(n_words + 1))
        placed.setdefault(rng.choice(spots), []).append(tag)
    if edge:
        if 0 not in placed:  # move one tag to the very start (a point tag at the end stays there)
            movable = [i for i in placed if i != n_words] or list(placed)
            placed.setdefault(0, []).extend(placed.pop(rng.choice(movable)))
        if all(len(group) < 2 for group in placed.values()) and len(placed) > 1:
            # join the start group with the next one (not the end boundary, when another is left) back to back
            keys = sorted(placed)
            inner_keys = [key for key in keys[1:] if key != n_words]
            second = inner_keys[0] if inner_keys else keys[1]
            placed[0] = placed.pop(0) + placed.pop(second)
    for spot, group in placed.items():
        # point tags before scoped ones, so a scoped tag sits right in front of the words it colours
        placed[spot] = [t for t in group if not is_scoped(t)] + [t for t in group if is_scoped(t)]
    return placed


def _join(words: list[str], placed: dict[int, list[str]], glue_back_to_back: bool) -> str:
    pieces = []
    for i in range(len(words) + 1):
        group = placed.get(i, [])
        if group:
            pieces.append(("" if glue_back_to_back else " ").join(f"[{t}]" for t in group))
        if i < len(words):
            pieces.append(words[i])
    return " ".join(pieces)


def compose_from_templates(
    request: ComposeRequest, rng: random.Random, *, emphasis_rate: float = 0.35, ellipsis_rate: float = 0.2
) -> str:
    """A v3-style script from the domain's sentence bank, with CAPITALISED emphasis and ellipses."""
    n_scoped = sum(is_scoped(t) for t in request.tags)
    n_sentences = min(5, max(2, n_scoped, (len(request.tags) + 1) // 2))
    bank = DOMAIN_SENTENCES[request.domain]
    sentences = []
    for template in rng.sample(bank, min(n_sentences, len(bank))):
        words = _SLOT.sub(lambda m: rng.choice(FILLERS[m.group(1)]), template).split()
        if rng.random() < emphasis_rate:
            _emphasise(words, rng)
        if rng.random() < ellipsis_rate:
            _trail_off(words, rng)
        sentences.append(words)
    placed = _place_tags(sentences, list(request.tags), request.edge, rng)
    words = [word for sentence in sentences for word in sentence]
    return _join(words, placed, glue_back_to_back=request.edge and rng.random() < 0.5)


def neutral_words(size: int | None = None) -> list[str]:
    """Words for scripts whose text must not give a tag away: the neutral bank minus anything that names a tag
    (its first ``size`` words when given)."""
    words = [word for word in NEUTRAL_WORDS if not vocab.is_known_tag(word)]
    if size is not None and not 8 <= size <= len(words):
        raise ValueError(f"word_bank_size must be between 8 and {len(words)}, got {size}")
    return words[:size]


def compose_from_random_words(
    request: ComposeRequest,
    rng: random.Random,
    *,
    words_per_segment: tuple[int, int] = (3, 6),
    word_bank_size: int | None = None,
) -> str:
    """A script of random neutral words: the tags can only be heard, never guessed from the text.

    Each scoped tag opens its own segment of words; untagged segments are mixed in so plain delivery is seen
    too; point tags fall on segment boundaries. Segments end with a full stop, which ends a scoped tag's reach.
    """
    bank = neutral_words(word_bank_size)
    scoped = [t for t in request.tags if is_scoped(t)]
    n_plain = rng.randint(0 if scoped else 1, 1)
    openers = scoped + [None] * n_plain
    rng.shuffle(openers)
    sentences = [rng.sample(bank, rng.randint(*words_per_segment)) for _ in openers]
    for sentence in sentences:
        sentence[-1] += "."
    starts = [sum(len(s) for s in sentences[:i]) for i in range(len(sentences))]
    n_words = sum(len(s) for s in sentences)
    placed: dict[int, list[str]] = {}
    for start, opener in zip(starts, openers):
        if opener:
            placed[start] = [opener]
    points = [t for t in request.tags if not is_scoped(t)]
    # edge scripts pin their first point tags to the clip's start and end; the rest fall between segments
    pinned = [0, n_words][: len(points)] if request.edge else []
    boundaries = [*starts[1:], n_words]
    for position, tag in enumerate(points):
        if position < len(pinned):
            spot = pinned[position]
        else:
            taken = {b for b in boundaries if any(not is_scoped(t) for t in placed.get(b, []))}
            spot = rng.choice([b for b in boundaries if b not in taken] or boundaries)
        placed[spot] = [tag] + placed.get(spot, [])
    words = [word for sentence in sentences for word in sentence]
    return _join(words, placed, glue_back_to_back=False)


COMPOSERS: dict[str, Composer] = {"templates": compose_from_templates, "random_words": compose_from_random_words}
