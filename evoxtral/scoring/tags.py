"""The tag vocabulary and the text rules every stage shares.

Eval, RAFT rewards, training callbacks, data generation and the server all parse transcripts through this module,
so a tag means the same thing everywhere. Two families of helpers live here:

* the project's own rules (``extract_tags``, ``canonical_tag``, ``strip_tags``, ``emphasis_words`` ...), used by
  the default corpus protocol, data generation and serving;
* ``original_*`` helpers that reproduce, quirks included, the text rules of the published Evoxtral-Bench
  (see metrics/evoxtral_bench/README.md), used only by ``protocol="evoxtral"``.

Policies (documented in the README's "Tag vocabulary" section):

* A tag is a ``[...]`` span with no bracket inside. Its name is lowercased, whitespace-collapsed and looked up in
  the vocabulary; aliases (``laughing`` -> ``laughs``) map to their canonical tag.
* Compound tags (``[laughs nervously]``): an exact vocabulary entry wins (``laughs harder`` is an ElevenLabs tag of
  its own). Otherwise, if the first word resolves to a known tag, the tag counts as that head tag and the rest is
  kept as its ``modifier``. ``[laughs nervously]`` therefore scores as ``laughs``.
* Anything else is an unknown tag: kept under its normalised name with ``known=False``.
* Unbalanced or nested brackets are not tags; ``bracket_errors`` reports them (for the format reward and data
  validation) and ``strip_tags`` leaves their characters in the text, so nothing is silently dropped.
* Emphasis is a whole word of two or more letters, all capitals (``REALLY``, ``DON'T``). Common acronyms
  (``TV``, ``OK``, ``USA`` ...) are not emphasis, and ``I`` never is.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

EMOTION = "emotion"
REACTION = "reaction"  # non-verbal sounds the speaker makes
DELIVERY = "delivery"  # how the words are voiced
PAUSE = "pause"
SOUND_EFFECT = "sound_effect"
CATEGORIES = (EMOTION, REACTION, DELIVERY, PAUSE, SOUND_EFFECT)


@dataclass(frozen=True)
class TagInfo:
    """A canonical ElevenLabs v3 audio tag and what it says about the speaker."""

    name: str
    category: str
    aliases: tuple[str, ...] = ()
    # The affect a tag signals, used to give transcript segments an emotion: a coarse label plus
    # valence (-1 unpleasant .. 1 pleasant) and arousal (0 calm .. 1 agitated). None: the tag says nothing about affect.
    emotion: str | None = None
    valence: float = 0.0
    arousal: float = 0.0


def _tag(name, category, aliases=(), emotion=None, valence=0.0, arousal=0.0):
    return TagInfo(name, category, tuple(aliases), emotion, valence, arousal)


VOCABULARY: dict[str, TagInfo] = {
    info.name: info
    for info in [
        # Emotions
        _tag("excited", EMOTION, ["excitedly", "excitement"], "joy", 0.7, 0.9),
        _tag("happy", EMOTION, ["happily", "cheerful", "cheerfully", "joyful"], "joy", 0.8, 0.6),
        _tag("sad", EMOTION, ["sadly", "sadness"], "sadness", -0.7, 0.3),
        _tag("sorrowful", EMOTION, ["sorrowfully"], "sadness", -0.8, 0.3),
        _tag("angry", EMOTION, ["angrily", "anger", "furious"], "anger", -0.7, 0.9),
        _tag("frustrated", EMOTION, ["frustration", "frustratedly", "annoyed"], "anger", -0.6, 0.7),
        _tag("nervous", EMOTION, ["nervously", "anxious", "anxiously"], "fear", -0.4, 0.7),
        _tag("scared", EMOTION, ["afraid", "fearful", "frightened", "terrified"], "fear", -0.7, 0.8),
        _tag("calm", EMOTION, ["calmly", "relaxed"], "neutral", 0.3, 0.1),
        _tag("confused", EMOTION, ["confusedly", "puzzled"], "surprise", -0.2, 0.5),
        _tag("curious", EMOTION, ["curiously"], "interest", 0.4, 0.5),
        _tag("surprised", EMOTION, ["surprise", "shocked"], "surprise", 0.2, 0.8),
        _tag("sarcastic", EMOTION, ["sarcastically", "sarcasm"], "contempt", -0.3, 0.5),
        _tag("mischievously", EMOTION, ["mischievous", "playfully"], "joy", 0.5, 0.6),
        # Non-verbal reactions
        _tag("laughs", REACTION, ["laugh", "laughing", "laughter", "chuckles", "giggles"], "joy", 0.7, 0.6),
        _tag("laughs harder", REACTION, ["laughing harder"], "joy", 0.8, 0.8),
        _tag("starts laughing", REACTION, ["begins laughing"], "joy", 0.7, 0.7),
        _tag("wheezing", REACTION, ["wheezes"], "joy", 0.6, 0.8),
        _tag("sighs", REACTION, ["sigh", "sighing"], "sadness", -0.3, 0.2),
        _tag("exhales", REACTION, ["exhale", "exhaling", "breathes out"], "neutral", 0.0, 0.2),
        _tag("gasps", REACTION, ["gasp", "gasping"], "surprise", -0.1, 0.8),
        _tag("clears throat", REACTION, ["clearing throat", "throat clear", "clears her throat", "clears his throat"]),
        _tag("crying", REACTION, ["cries", "sobbing", "sobs", "cry"], "sadness", -0.9, 0.6),
        _tag("snorts", REACTION, ["snort", "snorting"], "contempt", 0.1, 0.5),
        _tag("gulps", REACTION, ["gulp", "swallows", "swallowing"], "fear", -0.3, 0.5),
        # Delivery
        _tag("whispers", DELIVERY, ["whisper", "whispering", "whispered"]),
        _tag("shouts", DELIVERY, ["shout", "shouting", "yells", "yelling", "screams"], "anger", -0.2, 0.9),
        _tag("stammers", DELIVERY, ["stammer", "stammering", "stutters", "stuttering"], "fear", -0.3, 0.6),
        _tag("sings", DELIVERY, ["singing", "sing"], "joy", 0.6, 0.5),
        # Pauses
        _tag("pause", PAUSE, ["pauses", "pausing"]),
        _tag("short pause", PAUSE, ["brief pause"]),
        _tag("long pause", PAUSE, ["longer pause"]),
        # Sound effects
        _tag("applause", SOUND_EFFECT, ["applauding"]),
        _tag("clapping", SOUND_EFFECT, ["claps"]),
    ]
}

# The tags the original Evoxtral reports per-tag results for (15 intended + confused and scared).
ORIGINAL_TAGS = (
    "sighs", "clears throat", "gasps", "pause", "nervous", "stammers", "laughs", "sad", "whispers", "crying",
    "excited", "shouts", "calm", "frustrated", "angry", "confused", "scared",
)  # fmt: skip

# Uppercase words that are not emphasis. Kept short and unambiguous ("IT" and "US" are left out: they are also
# emphasised pronouns); an acronym missing here counts as emphasis.
ACRONYMS = frozenset(
    "AI API ASAP ATM BBC CEO CIA CNN CPU DIY DJ DNA DVD EU FAQ FBI FM GPS GPU HR ID LA LOL MBA NASA NBA NFL "
    "NY NYC OK OMG PC PDF PHD PM PR PS RSVP SMS SUV TBH TV UFO UK UN URL USA USB VIP VR WIFI WWII".split()
)

_ALIASES: dict[str, str] = {}
for _info in VOCABULARY.values():
    _ALIASES[_info.name] = _info.name
    for _alias in _info.aliases:
        _ALIASES[_alias] = _info.name

TAG_PATTERN = re.compile(r"\[([^\[\]]*)\]")
# A word of letters (any script) with inner apostrophes; digits excluded so "MP3" is handled by the acronym list.
_WORD_PATTERN = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_SPACES = re.compile(r"\s+")


def normalize_tag_name(raw: str) -> str:
    """Lowercase and collapse whitespace, the form in which names are compared."""
    return _SPACES.sub(" ", raw).strip().lower()


@dataclass(frozen=True)
class CanonicalTag:
    name: str  # canonical vocabulary name, or the normalised raw name when unknown
    known: bool
    modifier: str = ""  # the rest of a compound tag: "nervously" in [laughs nervously]


@lru_cache(maxsize=8192)  # transcripts repeat a few dozen tag spellings; scoring a corpus looks them up often
def canonical_tag(raw: str) -> CanonicalTag:
    """Resolve a tag's inner text to the vocabulary (aliases and compound tags included)."""
    name = normalize_tag_name(raw)
    if name in _ALIASES:
        return CanonicalTag(_ALIASES[name], True)
    head, _, rest = name.partition(" ")
    if rest and head in _ALIASES:
        return CanonicalTag(_ALIASES[head], True, rest)
    return CanonicalTag(name, False)


def is_known_tag(raw: str) -> bool:
    return canonical_tag(raw).known


@dataclass(frozen=True)
class TagSpan:
    """One tag occurrence in a transcript."""

    raw: str  # the text between the brackets, as written
    name: str  # canonical name (see canonical_tag)
    known: bool
    modifier: str
    start: int  # character offsets of the whole "[...]" span
    end: int
    word_index: int  # number of tag-free words before the tag: its position in the plain transcript


def extract_tags(text: str) -> list[TagSpan]:
    """Every well-formed tag, in order, with its canonical name and word position."""
    spans = []
    words_before = 0
    cursor = 0
    for match in TAG_PATTERN.finditer(text or ""):
        # no well-formed tag lies between two consecutive matches, so splitting counts its tag-free words
        words_before += len(text[cursor : match.start()].split())
        cursor = match.end()
        tag = canonical_tag(match.group(1))
        if not tag.name:  # "[]" and "[  ]" carry nothing
            continue
        spans.append(
            TagSpan(match.group(1), tag.name, tag.known, tag.modifier, match.start(), match.end(), words_before)
        )
    return spans


def tag_names(text: str) -> list[str]:
    """Canonical tag names in order, repeats kept."""
    return [span.name for span in extract_tags(text)]


def tag_counts(text: str) -> Counter:
    return Counter(tag_names(text))


def bracket_errors(text: str) -> list[str]:
    """Human-readable problems with brackets: unclosed, unopened, nested or empty tags."""
    errors = []
    depth = 0
    opened_at = -1
    for index, char in enumerate(text or ""):
        if char == "[":
            if depth:
                errors.append(f"nested '[' at {index} inside the tag opened at {opened_at}")
            depth += 1
            opened_at = index
        elif char == "]":
            if depth == 0:
                errors.append(f"']' at {index} closes nothing")
            else:
                depth -= 1
    if depth:
        errors.append(f"'[' at {opened_at} is never closed")
    for match in TAG_PATTERN.finditer(text or ""):
        if not match.group(1).strip():
            errors.append(f"empty tag at {match.start()}")
    return errors


def unknown_tags(text: str) -> list[str]:
    return [span.name for span in extract_tags(text) if not span.known]


def strip_tags(text: str) -> str:
    """The transcript without its tags, whitespace collapsed. Emphasis capitals are kept."""
    return _SPACES.sub(" ", TAG_PATTERN.sub(" ", text or "")).strip()


def is_emphasis_word(word: str) -> bool:
    """A word of 2+ letters, all capitals, that is not a common acronym."""
    if not word.isupper() or len(word.replace("'", "").replace("’", "")) < 2:
        return False
    return word not in ACRONYMS


def emphasis_words(text: str) -> list[str]:
    """Emphasised words (lowercased), in order, repeats kept. Tag contents are never emphasis."""
    return [word.lower() for word in _WORD_PATTERN.findall(strip_tags(text)) if is_emphasis_word(word)]


def emphasis_spans(text: str) -> list[tuple[int, int]]:
    """Character offsets (start, end) of the emphasised words in the tagged text itself, outside every tag: the
    words `emphasis_words` returns, where they stand (what an editor highlights)."""
    spans = []
    cursor = 0
    for match in [*TAG_PATTERN.finditer(text or ""), None]:
        stop = match.start() if match else len(text or "")
        for word in _WORD_PATTERN.finditer(text or "", cursor, stop):
            if is_emphasis_word(word.group(0)):
                spans.append((word.start(), word.end()))
        if match:
            cursor = match.end()
    return spans


def plain_text(text: str) -> str:
    """Readable plain transcript: tags removed, emphasis capitals turned back into normal casing."""

    def recase(match: re.Match) -> str:
        word = match.group(0)
        if not is_emphasis_word(word):
            return word
        before = stripped[: match.start()].rstrip()
        sentence_start = not before or before[-1] in ".!?…"
        return word.capitalize() if sentence_start else word.lower()

    stripped = strip_tags(text)
    return _WORD_PATTERN.sub(recase, stripped)


@dataclass
class SegmentEmotion:
    emotion: str = "neutral"
    valence: float = 0.0
    arousal: float = 0.0
    evidence: list[str] = field(default_factory=list)  # the affect-bearing tags it was derived from


def segment_emotion(text: str) -> SegmentEmotion:
    """The emotion a transcript segment's tags signal: the most frequent label, mean valence and arousal.

    Ties go to the label whose tag came last, since later tags describe where the speaker ended up.
    """
    infos = [VOCABULARY[name] for name in tag_names(text) if name in VOCABULARY and VOCABULARY[name].emotion]
    if not infos:
        return SegmentEmotion()
    counts = Counter(info.emotion for info in infos)
    best = max(counts.values())
    label = next(info.emotion for info in reversed(infos) if counts[info.emotion] == best)
    return SegmentEmotion(
        emotion=label,
        valence=round(sum(info.valence for info in infos) / len(infos), 3),
        arousal=round(sum(info.arousal for info in infos) / len(infos), 3),
        evidence=[info.name for info in infos],
    )


def tags_in_category(category: str) -> list[str]:
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    return [name for name, info in VOCABULARY.items() if info.category == category]


# --- The published Evoxtral-Bench text rules, reproduced exactly (protocol="evoxtral") -------------------------

ORIGINAL_TAG_PATTERN = re.compile(r"\[([^\]]+)\]")
ORIGINAL_EMPHASIS_PATTERN = re.compile(r"\b[A-Z]{2,}\b")
_ORIGINAL_STRIP_PATTERN = re.compile(r"\[[^\]]+\]\s*")


def original_tags(text: str) -> list[str]:
    """Every "[...]" span's inner text, lowercased, nothing else (no trimming, no alias merging)."""
    return [inner.lower() for inner in ORIGINAL_TAG_PATTERN.findall(text)]


def original_emphasis(text: str) -> list[str]:
    """Every whole word of 2+ capital ASCII letters, lowercased (acronyms included)."""
    return [word.lower() for word in ORIGINAL_EMPHASIS_PATTERN.findall(text)]


def original_strip(text: str) -> str:
    """Tags removed with the whitespace right after them, CAPS words lowercased, ends trimmed."""
    without_tags = _ORIGINAL_STRIP_PATTERN.sub("", text)
    return ORIGINAL_EMPHASIS_PATTERN.sub(lambda match: match.group(0).lower(), without_tags).strip()
