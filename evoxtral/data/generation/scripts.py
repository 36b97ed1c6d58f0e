"""Tagged scripts: density slices, domains, tag balance, one validation rule for every script source.

A script is the text a speech backend reads, with ElevenLabs v3 audio tags inline. Scripts come from three
sources that all end in ``validate_script``: the offline template composer (default), an LLM behind any
OpenAI-compatible endpoint (``evoxtral.data.generation.llm``), or a JSON/JSONL file of records with ``tagged_text``.

Balance is planned before any text exists: the clips of each split get their density slice and domain first,
then each split's tag slots are dealt so that every tag of the configured set reaches ``min_support`` in that
split and the rest is spread evenly. Only then are words written around the tags.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evoxtral.data.generation.templates import DOMAIN_SENTENCES, FILLERS, NEUTRAL_WORDS
from evoxtral.scoring import tags as vocab

SPLITS = ("train", "validation", "test")
DOMAINS = tuple(DOMAIN_SENTENCES)


@dataclass(frozen=True)
class DensitySlice:
    name: str
    min_tags: int
    max_tags: int
    edge: bool = False  # back-to-back tags and tags on the clip's first/last word boundary


SLICES: dict[str, DensitySlice] = {
    s.name: s
    for s in [
        DensitySlice("plain", 0, 0),
        DensitySlice("light", 1, 2),
        DensitySlice("moderate", 3, 4),
        DensitySlice("dense", 5, 8),
        DensitySlice("edge", 2, 6, edge=True),
    ]
}
# The original dataset's proportions.
DEFAULT_SLICE_FRACTIONS = {"plain": 0.25, "light": 0.25, "moderate": 0.25, "dense": 0.15, "edge": 0.10}

# Tags that colour the speech after them (until the sentence ends or another such tag starts); the other
# categories are events at one point in time (a laugh, a pause, applause).
SCOPED_CATEGORIES = (vocab.EMOTION, vocab.DELIVERY)

# The 15 tags the original data generator was asked for (its results add confused and scared, which leaked in).
INTENDED_ORIGINAL_TAGS = tuple(name for name in vocab.ORIGINAL_TAGS if name not in ("confused", "scared"))
TAG_SETS = {
    "original": INTENDED_ORIGINAL_TAGS,
    "original_reported": vocab.ORIGINAL_TAGS,
    "all": tuple(vocab.VOCABULARY),
}


def is_scoped(tag_name: str) -> bool:
    return vocab.VOCABULARY[tag_name].category in SCOPED_CATEGORIES


def resolve_tag_set(spec: str | Sequence[str]) -> list[str]:
    """A named tag set ("original", "original_reported", "all") or a list of tags, resolved to canonical names."""
    if isinstance(spec, str):
        if spec not in TAG_SETS:
            raise ValueError(f"unknown tag set {spec!r}; use one of {sorted(TAG_SETS)} or a list of tags")
        return list(TAG_SETS[spec])
    resolved = []
    for raw in spec:
        tag = vocab.canonical_tag(raw)
        if not tag.known or tag.modifier:
            raise ValueError(f"{raw!r} is not a vocabulary tag (see evoxtral/scoring/tags.py)")
        if tag.name not in resolved:
            resolved.append(tag.name)
    return resolved


@dataclass
class Script:
    id: str
    tagged_text: str
    slice: str
    domain: str
    split: str
    source: str  # "template", "llm" or "file"

    @property
    def tags(self) -> list[str]:
        return vocab.tag_names(self.tagged_text)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def slice_for_tag_count(count: int) -> str:
    """The density slice a script with this many tags belongs to when nobody said (edge is never inferred)."""
    for density in SLICES.values():
        if not density.edge and density.min_tags <= count <= density.max_tags:
            return density.name
    return "dense"


def validate_script(
    text: str,
    *,
    allowed_tags: Sequence[str] | None = None,
    expected_tags: Sequence[str] | None = None,
    slice_name: str | None = None,
) -> list[str]:
    """Every problem with a script, in words; an empty list means the script is usable.

    The one check every script source goes through: broken brackets, unknown tags, tags outside the configured
    set, a tag multiset other than the one asked for, a tag count outside the slice's range, no words to speak,
    and a scoped tag (emotion, delivery) with no speech after it to colour.
    """
    if not isinstance(text, str) or not text.strip():
        return ["empty script"]
    problems = list(vocab.bracket_errors(text))
    spans = vocab.extract_tags(text)
    unknown = [span.raw for span in spans if not span.known]
    if unknown:
        problems.append("unknown tags: " + ", ".join(f"[{raw}]" for raw in unknown))
    names = [span.name for span in spans if span.known]
    if allowed_tags is not None:
        outside = sorted(set(names) - set(allowed_tags))
        if outside:
            problems.append("tags outside the configured set: " + ", ".join(outside))
    if expected_tags is not None and Counter(names) != Counter(expected_tags):
        problems.append(
            f"expected tags {sorted(expected_tags)} ({len(expected_tags)}), got {sorted(names)} ({len(names)})"
        )
    if slice_name is not None:
        density = SLICES.get(slice_name)
        if density is None:
            problems.append(f"unknown slice {slice_name!r}")
        elif not density.min_tags <= len(spans) <= density.max_tags:
            problems.append(
                f"slice {slice_name!r} takes {density.min_tags}-{density.max_tags} tags, found {len(spans)}"
            )
    if not vocab.strip_tags(text).strip():
        problems.append("no words to speak")
    elif spans and spans[-1].known and is_scoped(spans[-1].name) and not text[spans[-1].end :].strip():
        problems.append(f"[{spans[-1].raw}] ends the script: there is no speech for it to colour")
    return problems


def apportion(total: int, fractions: dict[str, float]) -> dict[str, int]:
    """Split ``total`` into integer parts proportional to ``fractions`` (largest remainder, ties by key order)."""
    weight = sum(fractions.values())
    if total < 0 or weight <= 0 or any(value < 0 for value in fractions.values()):
        raise ValueError(f"cannot apportion {total} over {fractions}")
    exact = {key: total * value / weight for key, value in fractions.items()}
    parts = {key: int(value) for key, value in exact.items()}
    by_remainder = sorted(fractions, key=lambda key: (-(exact[key] - parts[key]), list(fractions).index(key)))
    for key in by_remainder[: total - sum(parts.values())]:
        parts[key] += 1
    return parts


def stratified_split(strata: Sequence[str], ratios: dict[str, float], seed: int) -> list[str]:
    """A split name for each item, seeded, with split sizes from ``apportion`` and each stratum spread in proportion.

    Items are shuffled within their stratum and laid out stratum after stratum; walking that order, each item goes
    to the split furthest behind its target share, so every stratum is cut in the same proportions.
    """
    rng = random.Random(seed)
    targets = apportion(len(strata), ratios)
    order = []
    for stratum in sorted(set(strata)):
        members = [index for index, name in enumerate(strata) if name == stratum]
        rng.shuffle(members)
        order.extend(members)
    assigned = dict.fromkeys(targets, 0)
    labels = [""] * len(strata)
    for position, index in enumerate(order, start=1):
        open_splits = [name for name in targets if assigned[name] < targets[name]]
        split = max(open_splits, key=lambda name: targets[name] * position / len(strata) - assigned[name])
        assigned[split] += 1
        labels[index] = split
    return labels


def plan_split_tags(
    slice_names: Sequence[str], tag_set: Sequence[str], min_support: int, rng: random.Random, split: str = ""
) -> list[list[str]]:
    """Deal the tags of one split's clips: each tag at least ``min_support`` times, the rest spread evenly.

    Tag counts are first drawn within each clip's slice range, then raised (never past the range) until the
    split can hold the required support. Tags within one clip are distinct whenever the set allows it.
    """
    densities = [SLICES[name] for name in slice_names]
    counts = [rng.randint(d.min_tags, d.max_tags) for d in densities]
    needed = min_support * len(tag_set)
    while sum(counts) < needed:
        growable = [i for i, d in enumerate(densities) if counts[i] < d.max_tags]
        if not growable:
            raise ValueError(
                f"the {split or 'a'} split has {len(slice_names)} clips holding at most {sum(counts)} tags, but "
                f"{len(tag_set)} tags x min_support {min_support} = {needed} are needed: raise num_clips, lower "
                "min_support or use fewer tags"
            )
        counts[rng.choice(growable)] += 1
    total = sum(counts)
    if not tag_set:
        if total:
            raise ValueError("slices with tags need a non-empty tag set")
        return [[] for _ in counts]
    quota = dict.fromkeys(tag_set, total // len(tag_set))
    for name in rng.sample(list(tag_set), total % len(tag_set)):
        quota[name] += 1
    dealt: list[list[str]] = [[] for _ in counts]
    # The clips that take the most tags go first, so the last clips are not left with repeats of one tag.
    for index in sorted(range(len(counts)), key=lambda i: (-counts[i], rng.random())):
        for _ in range(counts[index]):
            candidates = [name for name in tag_set if quota[name] > 0 and name not in dealt[index]]
            candidates = candidates or [name for name in tag_set if quota[name] > 0]
            best = max(quota[name] for name in candidates)
            choice = rng.choice([name for name in candidates if quota[name] == best])
            quota[choice] -= 1
            dealt[index].append(choice)
        rng.shuffle(dealt[index])
    return dealt


# --- Composers: words around a planned tag list ---------------------------------------------------------------


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


def neutral_words() -> list[str]:
    """Words for scripts whose text must not give a tag away: the neutral bank minus anything that names a tag."""
    return [word for word in NEUTRAL_WORDS if not vocab.is_known_tag(word)]


def compose_from_random_words(
    request: ComposeRequest, rng: random.Random, *, words_per_segment: tuple[int, int] = (3, 6)
) -> str:
    """A script of random neutral words: the tags can only be heard, never guessed from the text.

    Each scoped tag opens its own segment of words; untagged segments are mixed in so plain delivery is seen
    too; point tags fall on segment boundaries. Segments end with a full stop, which ends a scoped tag's reach.
    """
    bank = neutral_words()
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


@dataclass
class ScriptPlan:
    """The scripts of a run, and what went wrong on the way (reported in the summary, never fatal alone)."""

    scripts: list[Script] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    fallbacks: int = 0  # LLM scripts that failed validation every time and were written from templates instead


def generate_scripts(
    num_clips: int,
    tag_set: Sequence[str],
    *,
    seed: int = 0,
    slice_fractions: dict[str, float] | None = None,
    domains: Sequence[str] = DOMAINS,
    split_ratios: dict[str, float] | None = None,
    min_support: int = 1,
    composer: Composer = compose_from_templates,
    source: str = "template",
) -> ScriptPlan:
    """Seeded scripts over density slices and domains, each split holding every tag at least ``min_support`` times.

    ``composer`` writes the words around each planned tag list; whatever it returns goes through
    ``validate_script`` against the plan, and a composer that fails (an LLM, say) falls back to templates.
    """
    rng = random.Random(seed)
    fractions = slice_fractions or DEFAULT_SLICE_FRACTIONS
    unknown = set(fractions) - set(SLICES)
    if unknown:
        raise ValueError(f"unknown slices {sorted(unknown)}; slices are {list(SLICES)}")
    bad_domains = set(domains) - set(DOMAINS)
    if bad_domains or not domains:
        raise ValueError(f"unknown domains {sorted(bad_domains)}; domains are {list(DOMAINS)}")
    tag_set = resolve_tag_set(tag_set)
    slice_counts = apportion(num_clips, fractions)
    slice_names = [name for name, count in slice_counts.items() for _ in range(count)]
    domain_cycle = list(domains) * (num_clips // len(domains) + 1)
    rng.shuffle(slice_names)
    domain_names = domain_cycle[:num_clips]
    rng.shuffle(domain_names)
    splits = stratified_split(slice_names, split_ratios or dict(zip(SPLITS, (0.8, 0.1, 0.1))), seed)
    planned_tags: list[list[str]] = [[] for _ in range(num_clips)]
    for split in dict.fromkeys(splits):
        members = [i for i, name in enumerate(splits) if name == split]
        dealt = plan_split_tags([slice_names[i] for i in members], tag_set, min_support, rng, split)
        for i, tag_list in zip(members, dealt):
            planned_tags[i] = tag_list
    plan = ScriptPlan()
    for index in range(num_clips):
        request = ComposeRequest(domain_names[index], planned_tags[index], slice_names[index])
        clip_rng = random.Random(f"{seed}-{index}")
        text, clip_source = composer(request, clip_rng), source
        problems = validate_script(text, allowed_tags=tag_set, expected_tags=request.tags, slice_name=request.slice)
        if problems and composer is not compose_from_templates:
            plan.rejected.append((f"{source} script {index}", "; ".join(problems)))
            plan.fallbacks += 1
            text, clip_source = compose_from_templates(request, clip_rng), "template"
            problems = validate_script(
                text, allowed_tags=tag_set, expected_tags=request.tags, slice_name=request.slice
            )
        if problems:  # a template bug, not bad luck: fail loudly rather than ship a skewed dataset
            raise AssertionError(f"composed script {index} is invalid ({'; '.join(problems)}): {text!r}")
        plan.scripts.append(Script(f"{index:06d}", text, request.slice, request.domain, splits[index], clip_source))
    return plan


def load_scripts_file(
    path: str | Path,
    *,
    seed: int = 0,
    split_ratios: dict[str, float] | None = None,
    tag_set: Sequence[str] | None = None,
) -> ScriptPlan:
    """Scripts from JSON (a list, or {"scripts": [...]}) or JSONL records with ``tagged_text``.

    Optional fields: ``id``, ``slice`` (otherwise inferred from the tag count), ``domain``. Records that fail
    ``validate_script`` or are not records at all are reported and skipped. Splits are stratified by slice.
    """
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    plan = ScriptPlan()
    records: list[tuple[str, object]] = []
    if path.suffix == ".jsonl":
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((f"{path.name}:{number}", json.loads(line)))
            except json.JSONDecodeError as error:
                plan.rejected.append((f"{path.name}:{number}", f"not JSON ({error.msg})"))
    else:
        data = json.loads(raw)
        data = data.get("scripts", data) if isinstance(data, dict) else data
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of records or {{'scripts': [...]}}")
        records = [(f"{path.name}[{i}]", record) for i, record in enumerate(data)]
    allowed = resolve_tag_set(tag_set) if tag_set is not None else None
    kept = []
    for where, record in records:
        if not isinstance(record, dict) or not isinstance(record.get("tagged_text"), str):
            plan.rejected.append((where, "no 'tagged_text' string"))
            continue
        text = record["tagged_text"]
        slice_name = record.get("slice") or slice_for_tag_count(len(vocab.extract_tags(text)))
        problems = validate_script(text, allowed_tags=allowed, slice_name=slice_name)
        domain = record.get("domain", "unknown")
        if problems:
            plan.rejected.append((where, "; ".join(problems)))
            continue
        kept.append((str(record.get("id", len(kept))), text, slice_name, str(domain)))
    splits = stratified_split([k[2] for k in kept], split_ratios or dict(zip(SPLITS, (0.8, 0.1, 0.1))), seed)
    plan.scripts = [Script(i, text, s, d, split, "file") for (i, text, s, d), split in zip(kept, splits)]
    return plan


def tag_support(scripts: Sequence[Script]) -> dict[str, Counter]:
    """Tag occurrences per split."""
    support: dict[str, Counter] = {}
    for script in scripts:
        support.setdefault(script.split, Counter()).update(script.tags)
    return support
