"""Words the stub builds replies and sample values from."""

from __future__ import annotations

import re

ADJECTIVES = (
    "amber",
    "quiet",
    "silver",
    "restless",
    "gentle",
    "ancient",
    "bright",
    "hidden",
    "wandering",
    "curious",
    "velvet",
    "distant",
    "hollow",
    "golden",
    "stormy",
    "patient",
    "crooked",
    "luminous",
)
NOUNS = (
    "lantern",
    "harbour",
    "orchard",
    "compass",
    "library",
    "meadow",
    "lighthouse",
    "tide",
    "journal",
    "garden",
    "observatory",
    "river",
    "workshop",
    "cartographer",
    "market",
    "bridge",
    "festival",
    "map",
)
SENTENCE_WORDS = (
    "the",
    "a",
    "old",
    "quiet",
    "harbour",
    "keeps",
    "every",
    "secret",
    "that",
    "tide",
    "brings",
    "in",
    "lantern",
    "light",
    "falls",
    "across",
    "maps",
    "of",
    "places",
    "nobody",
    "has",
    "visited",
    "yet",
    "stories",
    "travel",
    "further",
    "than",
    "ships",
    "and",
    "patient",
    "hands",
    "mend",
    "nets",
    "at",
    "dawn",
    "while",
    "gulls",
    "argue",
    "over",
    "bread",
    "bright",
    "morning",
    "carries",
    "salt",
    "wind",
)
NAME_SYLLABLES = ("ka", "ri", "mo", "la", "vel", "an", "thi", "or", "sa", "den", "mi", "ra", "lu", "ne", "bri")
SURNAME_SUFFIXES = ("", "wood", "ford", "sen", "ley", "vale")

_NAME_FIELD = re.compile(r"(^|_)(name|full_name|first_name|last_name|nickname|alias|character)$", re.I)
_LONG_FIELD = re.compile(
    r"(description|bio|biography|backstory|story|summary|personality|appearance|greeting|"
    r"text|content|message|reply|notes?|history|background|motivation|style|voice|scenario)",
    re.I,
)


def name_fields(field: str) -> bool:
    """Whether a JSON property name asks for a person's name."""
    return bool(_NAME_FIELD.search(field))


def long_text_fields(field: str) -> bool:
    """Whether a JSON property name asks for prose."""
    return bool(_LONG_FIELD.search(field))


# trait -> (gestures, ways of regarding a topic: each takes {topic})
TRAITS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "curious": (
        ("leans in, eyes bright", "tilts their head with interest"),
        (
            "I could spend a whole afternoon asking questions about {topic}",
            "there is always one more thing to learn about {topic}",
        ),
    ),
    "grumpy": (
        ("crosses their arms with a sigh", "grumbles under their breath"),
        (
            "{topic} is more trouble than it is worth, if you ask me",
            "I suppose {topic} will not sort itself out, more's the pity",
        ),
    ),
    "shy": (
        ("glances away for a moment", "fidgets with a sleeve"),
        ("I... I do like {topic}, quietly", "I have thought about {topic} more than I usually admit"),
    ),
    "witty": (
        ("raises an eyebrow, smiling", "grins as if at a private joke"),
        (
            "{topic} is serious business, which is exactly why I refuse to take it seriously",
            "I have a theory about {topic}, and it is only slightly ridiculous",
        ),
    ),
    "sarcastic": (
        ("rolls their eyes theatrically", "smirks"),
        ("oh, {topic}, my favourite subject in the whole wide world", "{topic}, how thrilling"),
    ),
    "kind": (
        ("smiles warmly", "rests a reassuring hand on the table"),
        ("{topic} matters because it matters to you", "we can look at {topic} together, no rush"),
    ),
    "cheerful": (
        ("beams", "bounces on their heels"),
        ("{topic} sounds wonderful", "{topic} is the best thing I have heard all day"),
    ),
    "brave": (
        ("squares their shoulders", "stands a little taller"),
        ("I would face {topic} head-on", "{topic} does not frighten me"),
    ),
    "wise": (
        ("strokes their chin thoughtfully", "pauses, choosing the words"),
        ("{topic} teaches patience to those who listen", "every answer about {topic} hides another question"),
    ),
    "mysterious": (
        ("half-smiles, giving nothing away", "lets the silence stretch"),
        ("{topic} is not what it seems", "I know more about {topic} than I can say"),
    ),
    "playful": (
        ("winks", "spins around once"),
        ("let us make a game of {topic}", "{topic}? I bet I can make it fun"),
    ),
    "stoic": (
        ("nods once", "keeps an even expression"),
        ("{topic} is what it is; we deal with it", "there is no use complaining about {topic}"),
    ),
    "melancholic": (
        ("looks out of the window", "sighs softly"),
        ("{topic} reminds me of things I have lost", "even {topic} fades, in the end"),
    ),
    "stubborn": (
        ("plants their feet", "shakes their head firmly"),
        ("I have made up my mind about {topic}", "nobody will talk me out of my view on {topic}"),
    ),
    "romantic": (
        ("sighs dreamily", "presses a hand to their heart"),
        ("there is poetry in {topic}", "{topic} is best shared under the stars"),
    ),
    "cynical": (
        ("snorts", "shrugs"),
        ("everyone has an angle on {topic}", "{topic} never works out the way they promise"),
    ),
    "energetic": (
        ("practically vibrates with excitement", "paces back and forth"),
        ("let us get started on {topic} right now", "{topic}! I have so many ideas"),
    ),
    "calm": (
        ("breathes slowly", "settles into the chair"),
        ("there is no hurry with {topic}", "{topic} will become clear in time"),
    ),
    "proud": (
        ("lifts their chin", "straightens their coat"),
        ("few understand {topic} as well as I do", "I have mastered {topic} long ago"),
    ),
    "anxious": (
        ("bites their lip", "checks the door twice"),
        ("what if {topic} goes wrong?", "I keep worrying about {topic}"),
    ),
    "loyal": (
        ("steps closer", "nods firmly"),
        ("whatever {topic} brings, I am with you", "you can count on me with {topic}"),
    ),
    "formal": (
        ("inclines their head politely", "folds their hands"),
        ("{topic} deserves careful consideration", "allow me to offer a view on {topic}"),
    ),
    "adventurous": (
        ("grabs a map", "grins at the horizon"),
        ("{topic} sounds like the start of an expedition", "I would cross an ocean for {topic}"),
    ),
    "bookish": (
        ("pushes their glasses up", "marks a page in a worn book"),
        ("I read a chapter about {topic} just last night", "the archives have three volumes on {topic}"),
    ),
}
GENERIC_GESTURES = ("smiles", "pauses to think", "nods slowly", "looks up")
GENERIC_STANCES = (
    "{topic} is worth talking about",
    "I have my own thoughts about {topic}",
    "{topic} keeps coming back to me",
)
TRAIT_SYNONYMS = {
    "inquisitive": "curious",
    "nosy": "curious",
    "grouchy": "grumpy",
    "irritable": "grumpy",
    "timid": "shy",
    "introverted": "shy",
    "clever": "witty",
    "funny": "witty",
    "humorous": "witty",
    "sardonic": "sarcastic",
    "warm": "kind",
    "caring": "kind",
    "compassionate": "kind",
    "gentle": "kind",
    "happy": "cheerful",
    "optimistic": "cheerful",
    "bubbly": "cheerful",
    "courageous": "brave",
    "bold": "brave",
    "sage": "wise",
    "thoughtful": "wise",
    "enigmatic": "mysterious",
    "secretive": "mysterious",
    "mischievous": "playful",
    "teasing": "playful",
    "reserved": "stoic",
    "sad": "melancholic",
    "gloomy": "melancholic",
    "obstinate": "stubborn",
    "pessimistic": "cynical",
    "hyper": "energetic",
    "serene": "calm",
    "arrogant": "proud",
    "nervous": "anxious",
    "devoted": "loyal",
    "polite": "formal",
    "daring": "adventurous",
    "scholarly": "bookish",
    "nerdy": "bookish",
}
