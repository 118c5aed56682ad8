"""In-character replies: read who the assistant plays from the system prompt and answer the user as them.

Deterministic: the same system prompt and user message always give the same reply.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from orrery_llm_stub.wordlists import GENERIC_GESTURES, GENERIC_STANCES, TRAIT_SYNONYMS, TRAITS
from orrery_shared.llm.tokens import estimate_tokens

DEFAULT_NAME = "Orrery"
_NAME = r"([A-Z][\w'\u2019-]+(?:[ \t]+(?:[A-Z][\w'\u2019-]+|of|the|von|van|de|du|la|le)){0,3})"
_NOT_NAMES = {"A", "An", "The", "AI", "I", "You", "Your", "This", "It", "We", "Please", "Assistant"}
_NAME_PATTERNS = (
    re.compile(r"^\s*(?i:name|character|character name|persona)\s*[:=]\s*" + _NAME, re.MULTILINE),
    re.compile(
        r"\b(?i:you are|you're|you play|playing|roleplay(?:ing)? as|role-?play as|play the role of|"
        r"act as|speak as|stay in character as)\s+" + _NAME
    ),
    re.compile(r"\b(?i:named|called)\s+" + _NAME),
)
_TRAIT_LINE = re.compile(
    r"^\s*(?:traits?|personality|temperament|character traits|demeanou?r)\s*[:=]\s*(.+)$",
    re.IGNORECASE | re.MULTILINE,
)
_SETTING_LINE = re.compile(r"^\s*(?:setting|world|location|place)\s*[:=]\s*(.+?)\.?\s*$", re.I | re.M)
_WORD = re.compile(r"[A-Za-z][A-Za-z'\u2019-]*")
_STOP = set(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "about",
        "from",
        "into",
        "over",
        "under",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "done",
        "have",
        "has",
        "had",
        "having",
        "i",
        "me",
        "my",
        "mine",
        "you",
        "your",
        "yours",
        "we",
        "us",
        "our",
        "he",
        "him",
        "his",
        "she",
        "her",
        "they",
        "them",
        "their",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "not",
        "no",
        "yes",
        "so",
        "very",
        "just",
        "really",
        "quite",
        "too",
        "also",
        "then",
        "than",
        "there",
        "here",
        "tell",
        "think",
        "know",
        "like",
        "want",
        "feel",
        "say",
        "said",
        "go",
        "going",
        "get",
        "got",
        "make",
        "let",
        "lets",
        "please",
        "thanks",
        "thank",
        "hi",
        "hello",
        "hey",
        "well",
        "oh",
        "okay",
        "ok",
        "today",
        "tonight",
        "now",
        "any",
        "some",
        "much",
        "many",
        "more",
        "most",
        "all",
        "one",
        "something",
        "anything",
        "everything",
        "nothing",
        "ever",
        "never",
        "always",
        "again",
        "still",
        "even",
        "only",
        "way",
        "thing",
        "things",
        "lot",
        "bit",
        "kind",
        "sort",
        "yesterday",
        "tomorrow",
        "week",
        "weekend",
        "morning",
        "evening",
        "night",
        "time",
    ]
)
_DETERMINERS = {"the", "a", "an", "my", "your", "our", "his", "her", "their", "this", "that", "these"}
_PERSPECTIVE = {"my": "your", "your": "my", "our": "your"}
_GREETING = re.compile(r"^\s*(hi|hello|hey|greetings|good (morning|afternoon|evening)|howdy|yo)\b", re.I)
_FAREWELL = re.compile(r"\b(bye|goodbye|good night|see you|farewell)\b", re.I)


@dataclass(frozen=True)
class Persona:
    """Who the assistant plays."""

    name: str
    traits: tuple[str, ...]
    setting: str | None


def read_persona(system_prompt: str) -> Persona:
    """The character name, traits and setting a system prompt describes (with sensible fallbacks)."""
    name = DEFAULT_NAME
    for pattern in _NAME_PATTERNS:
        for match in pattern.finditer(system_prompt):
            candidate = _trim_name(match.group(1))
            if candidate and candidate.split()[0] not in _NOT_NAMES:
                name = candidate
                break
        if name != DEFAULT_NAME:
            break
    traits: list[str] = []
    line = _TRAIT_LINE.search(system_prompt)
    if line:
        for raw in re.split(r",|;|/|\band\b|\|", line.group(1)):
            word = raw.strip().strip(".").lower()
            if word and len(word.split()) <= 3:
                traits.append(word)
    for word in _WORD.findall(system_prompt.lower()):
        canonical = TRAIT_SYNONYMS.get(word, word)
        if canonical in TRAITS and not any(canonical in t or word in t for t in traits):
            traits.append(canonical)
    setting_match = _SETTING_LINE.search(system_prompt)
    return Persona(name=name, traits=tuple(traits), setting=setting_match.group(1) if setting_match else None)


def _trim_name(raw: str) -> str:
    words = raw.split()
    while words and words[-1].lower() in {"of", "the", "von", "van", "de", "du", "la", "le"}:
        words.pop()
    return " ".join(words)


def topic_of(message: str) -> str:
    """The phrase a message is about: its last noun phrase after a determiner, else its longest
    run of content words."""
    words = _WORD.findall(message)
    runs: list[tuple[int, int]] = []
    start = None
    for i, word in enumerate([*words, "."]):
        content = word != "." and word.lower() not in _STOP and len(word) > 2
        if content and start is None:
            start = i
        elif not content and start is not None:
            runs.append((start, i))
            start = None
    if not runs:
        return "that"
    led = [(a, b) for a, b in runs if a > 0 and words[a - 1].lower() in _DETERMINERS]
    if led:
        first, end = led[-1]
        end = min(end, first + 3)
        first -= 1
    else:
        first, end = max(runs, key=lambda run: (run[1] - run[0], run[0]))
        first = max(first, end - 3)
    # The user's "my compass" is "your compass" from where the character stands, and vice versa.
    phrase = []
    for j, word in enumerate(words[first:end], first):
        lowered = word.lower()
        if j == first and lowered in _PERSPECTIVE:
            word = _PERSPECTIVE[lowered]
        elif lowered in _DETERMINERS or j == 0:
            # Capitalised only because it opened the sentence.
            word = lowered if j > 0 or word[1:].islower() else word
        phrase.append(word)
    return " ".join(phrase)


def seed_for(*parts: str) -> int:
    """A stable seed from text (Python's hash() is salted per process)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _voice(persona: Persona, rng: random.Random) -> tuple[str, str, list[str]]:
    known = [TRAIT_SYNONYMS.get(t, t) for t in persona.traits]
    voiced = [t for t in known if t in TRAITS]
    if voiced:
        trait = rng.choice(voiced)
        gestures, stances = TRAITS[trait]
        return trait, rng.choice(gestures), list(stances)
    trait = persona.traits[0] if persona.traits else ""
    return trait, rng.choice(GENERIC_GESTURES), list(GENERIC_STANCES)


def compose_reply(persona: Persona, user_message: str, *, seed: int, min_tokens: int | None = None) -> str:
    """An in-character answer to `user_message`; at least `min_tokens` long when given."""
    rng = random.Random(seed)
    topic = topic_of(user_message)
    if topic.lower() in persona.name.lower():
        # "Hello, Captain!" addresses the character; it is not what the message is about.
        topic = "that"
    trait, gesture, stances = _voice(persona, rng)
    parts = [f"*{persona.name} {gesture}.*"]
    if _FAREWELL.search(user_message):
        parts.append(rng.choice(("Leaving already? Safe travels.", "Until next time, then.", "Go well, friend.")))
        text = " ".join(parts)
        return extend_to(text, min_tokens, rng, stances, "the road ahead", persona) if min_tokens else text
    greeting = bool(_GREETING.search(user_message))
    if greeting:
        parts.append(rng.choice(("Well, hello there.", "Oh, it's you! Hello.", "Greetings, friend.")))
    elif user_message.rstrip().endswith("?"):
        parts.append(rng.choice((f"You ask about {topic}?", f"{_cap(topic)}? Now that is a question.")))
    else:
        parts.append(rng.choice((f"{_cap(topic)}... hm.", f"So, {topic}.", f"Ah, {topic}.")))
    if topic == "that" and greeting:
        topic = "what today might bring"
    stance = rng.choice(stances).format(topic=topic)
    if trait:
        frame = rng.choice(
            (
                "Being {a} {trait} sort, I will say this: {stance}.",
                "You know me, {a} {trait} soul: {stance}.",
                "{Stance}. That is the {trait} in me talking.",
            )
        )
        parts.append(frame.format(a=_article(trait), trait=trait, stance=stance, Stance=_cap(stance)))
    else:
        parts.append(f"{_cap(stance)}.")
    if persona.setting:
        parts.append(
            rng.choice(
                (
                    f"Here in {persona.setting}, people talk of little else.",
                    f"Nothing stays secret for long in {persona.setting}.",
                )
            )
        )
    parts.append(
        rng.choice(
            (
                f"What draws you to {topic}?",
                "Tell me more — I am listening.",
                f"And you? What do you make of {topic}?",
            )
        )
    )
    text = " ".join(parts)
    if min_tokens is not None:
        text = extend_to(text, min_tokens, rng, stances, topic, persona)
    return text


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def extend_to(text: str, tokens: int, rng: random.Random, stances: list[str], topic: str, persona: Persona) -> str:
    """`text` lengthened with further in-character sentences to at least `tokens` tokens."""
    have = estimate_tokens(text)
    extra: list[str] = []
    fillers = (
        "{stance}.",
        "Sometimes I think {stance}.",
        "*" + persona.name + " pauses.* Still, {stance}.",
        "Mark my words: {stance}.",
    )
    while have < tokens:
        stance = rng.choice(stances).format(topic=topic)
        sentence = " " + _cap(rng.choice(fillers).format(stance=stance))
        extra.append(sentence)
        have += estimate_tokens(sentence)
    text += "".join(extra)
    while estimate_tokens(text) < tokens:
        # Pieces can merge where sentences meet; top up until the whole text is long enough.
        text += " " + _cap(rng.choice(stances).format(topic=topic)) + "."
    return text
