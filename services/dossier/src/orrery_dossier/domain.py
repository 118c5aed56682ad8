"""The dossier's rules, free of I/O: which turns matter, when to extract, and how extractions and edits merge.

Smart update: each completed turn is scored from its user message (new proper nouns, explicit story
statements, content words) plus new names the reply introduced. Chit-chat ("ok", "lol", greetings, emojis) and
turns scoring below a floor are dropped. Kept turns wait per project until they are worth an extraction call:
enough signal over enough turns, too many waiting, or the oldest waited too long.

Merge: an extraction only adds. Characters match by name (case- and whitespace-insensitive); their texts
gain new sentences, relationships are unioned; themes, locations and plot points are deduplicated. What a user
removed stays removed and a text a user wrote stays as written (see `apply_user_edit`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from orrery_shared.events import DossierCharacter, DossierSnapshot

Section = Literal["characters", "themes", "locations", "plot_points"]
SECTIONS: tuple[Section, ...] = ("characters", "themes", "locations", "plot_points")
ListSection = Literal["themes", "locations", "plot_points"]
LIST_SECTIONS: tuple[ListSection, ...] = ("themes", "locations", "plot_points")
PinnedField = Literal["description", "character_arc"]

# Sizes every stored snapshot respects (the API refuses more; extractions are cut to fit).
NAME_MAX = 200
TEXT_MAX = 4_000
RELATIONSHIP_MAX = 500
RELATIONSHIPS_MAX_ITEMS = 100
ITEM_MAX = 1_000
TITLE_MAX = 200
SECTION_MAX_ITEMS: dict[Section, int] = {"characters": 500, "themes": 500, "locations": 500, "plot_points": 1_000}
REMOVED_MAX_ITEMS = 2_000
KNOWN_TERMS_MAX = 2_000
PENDING_TERMS_MAX = 500


# --- text ---------------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
_TRAILING = " \t\r\n.,;:!?…\"'\u201c\u201d\u2018\u2019()[]"
_LAUGH = re.compile(r"(?:a?(?:ha|he|hi|ja|xa)){2,}h?|l+o+l+z?|lmf?ao+|rofl+|xd+|kek|hm+|u+m+|u+h+|o+h+|a+h+|w+o+w+")


def norm(text: str) -> str:
    """The key two texts are the same by: case-folded, inner whitespace collapsed, outer punctuation dropped."""
    return " ".join(text.casefold().split()).strip(_TRAILING)


def clip(text: str, limit: int) -> str:
    """`text` with whitespace tidied, cut at a word boundary to at most `limit` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip()


def words(text: str) -> list[str]:
    """The words of `text` (letters and inner apostrophes), as written."""
    return _WORD.findall(text)


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOPWORDS = _wordset(
    """
    a about above after again against all almost also am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
    either else ever every few for from further get gets got had hadn't has hasn't have haven't having he he'd he'll
    he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its
    itself just let's me more most much must mustn't my myself never no nor not now of off on once only or other
    ought our ours ourselves out over own same shan't she she'd she'll she's should shouldn't so some such than that
    that's the their theirs them themselves then there there's these they they'd they'll they're they've this those
    through to too under until up upon very was wasn't we we'd we'll we're we've were weren't what what's when
    when's where where's which while who who's whom why why's will with won't would wouldn't you you'd you'll you're
    you've your yours yourself yourselves yet still even already really quite rather maybe perhaps though although
    since whether may might shall us one ones thing things something anything nothing everything someone anyone
    everybody nobody somebody lot lots bit kind sort way there'd im ive dont cant wont didnt isnt thats whats
    """
)

CHITCHAT = _wordset(
    """
    ok okay okey k kk alright right sure fine yes yeah yea yep yup ya no nope nah hi hello hey heya hiya yo hola
    howdy greetings morning evening afternoon night goodnight gn gm bye goodbye cya see later soon thanks thank
    thx ty tysm cheers please pls plz welcome np cool nice great good awesome amazing wonderful lovely perfect
    excellent sweet neat fun funny wow whoa omg oh ah aw aww ooh huh hmm hm mhm um uh er well anyway anyways
    lol lmao rofl haha hahaha hehe heh xd tell more continue go on keep going next again interesting true agreed
    indeed exactly totally definitely absolutely probably guess think thought know knew see saw understand mean
    like love liked loved want wanted care glad happy sad sorry bad boring weird strange crazy wild cute hilarious
    idea ideas question questions answer story yours mine ours day today tonight tomorrow yesterday time
    how's doing going well fine nice sounds sound say said talk talking chat chatting bot ai
    """
)

# Capitalised at a sentence's start without being a name.
_COMMON_STARTERS = _wordset(
    """
    suddenly later meanwhile eventually finally first second third next last soon afterwards then also actually
    honestly basically anyway anyways well okay ok sure wait look listen imagine describe write make give show tell
    let lets please could would should can will did does do is are was were have has had what why how who where
    when which she he they we you it my our your their his her the a an this that these those there here in on at
    after before during once while if but and so or because since although though still now every each all some
    many most no not only even just really great good nice cool love like thanks hi hello hey yes yeah oh ah
    today tomorrow yesterday tonight someday sometimes always never maybe perhaps probably besides instead
    unfortunately luckily sadly hopefully together alone nobody everyone someone nothing everything something
    chapter scene act part book story plot whatever however therefore otherwise despite without within
    """
)

_NOT_NAMES = _wordset(
    """
    i i'm i've i'll i'd monday tuesday wednesday thursday friday saturday sunday january february march april
    june july august september october november december english ai
    """
)

_NOISE = STOPWORDS | CHITCHAT


def is_trivial(user_text: str) -> bool:
    """Chit-chat with nothing a dossier could use: greetings, acknowledgements, laughter, emojis only."""
    found = words(user_text)
    return all(w.casefold() in _NOISE or _LAUGH.fullmatch(w.casefold()) for w in found)


def content_words(text: str) -> list[str]:
    """Words carrying meaning (not function words or chit-chat), case-folded."""
    out = []
    for word in words(text):
        key = word.casefold()
        if len(key) >= 3 and key not in _NOISE and not _LAUGH.fullmatch(key):
            out.append(key)
    return out


def proper_nouns(text: str) -> set[str]:
    """Case-folded capitalised words that look like names (a sentence's first word only if it is uncommon)."""
    found: set[str] = set()
    for sentence in _SENTENCE_END.split(text):
        for index, match in enumerate(_WORD.finditer(sentence)):
            word = match.group()
            if len(word) < 2 or not word[0].isupper() or word.isupper():
                continue
            key = re.sub(r"['\u2019]s$", "", word.casefold())
            if key in _NOISE or key in _NOT_NAMES or len(key) < 2:
                continue
            if index == 0 and key in _COMMON_STARTERS:
                continue
            found.add(key)
    return found


STORY_PATTERNS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern, re.IGNORECASE)
    for name, pattern in {
        "framing": r"\b(?:my|our|the|this|a) (?:story|novel|book|script|screenplay|film|movie|plot|world|saga|tale"
        r"|series|campaign|protagonist|hero|heroine|villain|antagonist|narrator|main character|character|setting)\b",
        "naming": r"\b(?:named|called|known as|whose name is|name is|goes by)\b",
        "placing": r"\b(?:lives?|lived|living|born|grew up|raised|works?|worked|rules?|ruled|hides?|hid"
        r"|travel(?:s|l?ed)?|moves?|moved|arrives?|arrived|returns?|returned|comes? from|came from|set|takes? place)"
        r"\s+(?:in|on|at|to|from|near|inside|under|aboard)\b",
        "relation": r"\b(?:sister|brother|mother|father|daughter|son|wife|husband|lover|partner|mentor|apprentice"
        r"|rival|enemy|nemesis|ally|captain|queen|king|prince|princess|uncle|aunt|cousin|twin|boss|crew)s?\b",
        "event": r"\b(?:betray\w*|murder\w*|kill\w*|escap\w*|discover\w*|reveal\w*|steal\w*|stole|kidnap\w*"
        r"|rescu\w*|falls? in love|fell in love|dies|died|death|war|battle|attack\w*|invad\w*|exile\w*|curse\w*"
        r"|prophecy|secret\w*|hunt\w*|flee\w*|fled|wedding|trial|heist|mission|quest|journey|revenge|destroy\w*"
        r"|crash\w*|stranded|captured|imprison\w*|sacrific\w*|swor[en]|vow\w*)\b",
        "structure": r"\b(?:chapter|scene|prologue|epilogue|flashback|backstory|ending|climax|twist|arc|sequel"
        r"|theme|motif|act (?:one|two|three|i|ii|iii|\d))s?\b",
        "time": r"\b(?:in|during|since) (?:the )?(?:year )?(?:\d{3,4}s?|far future|future|past|middle ages"
        r"|\d{1,2}(?:st|nd|rd|th) century)\b",
    }.items()
}


def story_statements(text: str) -> list[str]:
    """Which kinds of explicit story statement `text` makes (framing, naming, placing, relations, events...)."""
    return [name for name, pattern in STORY_PATTERNS.items() if pattern.search(text)]


# --- smart update -------------------------------------------------------------------------------------

W_CONTENT, CAP_CONTENT = 0.25, 3.0
W_NAME, CAP_NAME = 3.0, 9.0
W_STORY, CAP_STORY = 4.0, 8.0
W_REPLY_NAME, CAP_REPLY_NAME = 1.5, 3.0


@dataclass(frozen=True)
class TurnSignal:
    """How much a turn may add to the dossier."""

    score: float
    trivial: bool
    new_terms: frozenset[str]
    reasons: tuple[str, ...]


TRIVIAL = TurnSignal(0.0, True, frozenset(), ("chit-chat",))


def assess_turn(user_text: str, assistant_text: str, known_terms: Collection[str]) -> TurnSignal:
    """Score a turn against what the dossier (and the turns already waiting) already name."""
    if is_trivial(user_text):
        return TRIVIAL
    known = set(known_terms)
    content = content_words(user_text)
    names = proper_nouns(user_text) - known
    reply_names = proper_nouns(assistant_text) - known - names
    stories = story_statements(user_text)
    score = (
        min(len(content) * W_CONTENT, CAP_CONTENT)
        + min(len(names) * W_NAME, CAP_NAME)
        + min(len(stories) * W_STORY, CAP_STORY)
        + min(len(reply_names) * W_REPLY_NAME, CAP_REPLY_NAME)
    )
    reasons = [*(f"story:{s}" for s in stories), *(f"name:{n}" for n in sorted(names))]
    if reply_names:
        reasons.append(f"reply-names:{len(reply_names)}")
    return TurnSignal(round(score, 2), False, frozenset(names | reply_names), tuple(reasons))


@dataclass(frozen=True)
class Pending:
    """The turns of one project waiting for extraction."""

    count: int = 0
    score: float = 0.0
    chars: int = 0
    oldest: datetime | None = None

    def plus(self, score: float, chars: int, at: datetime) -> Pending:
        """These turns and one more."""
        oldest = at if self.oldest is None else min(self.oldest, at)
        return Pending(self.count + 1, self.score + score, self.chars + chars, oldest)


@dataclass(frozen=True)
class SchedulePolicy:
    """When a project's waiting turns are worth an extraction call."""

    extract_score: float = 20.0
    min_batch_turns: int = 3
    long_text_chars: int = 1_500
    max_pending_turns: int = 12
    max_wait_seconds: float = 300.0
    min_turn_score: float = 1.0

    def keeps(self, signal: TurnSignal) -> bool:
        """Whether a turn is stored for the next extraction at all."""
        return not signal.trivial and signal.score >= self.min_turn_score

    def ready(self, pending: Pending) -> bool:
        """Worth extracting now: enough signal over enough turns (or text), or too many waiting."""
        if pending.count == 0:
            return False
        if pending.count >= self.max_pending_turns:
            return True
        enough_material = pending.count >= self.min_batch_turns or pending.chars >= self.long_text_chars
        return pending.score >= self.extract_score and enough_material

    def due_at(self, pending: Pending, now: datetime, retry_at: datetime | None = None) -> datetime | None:
        """When the project should be extracted: now, when its oldest turn has waited too long, or never."""
        if pending.count == 0 or pending.oldest is None:
            return None
        due = now if self.ready(pending) else pending.oldest + timedelta(seconds=self.max_wait_seconds)
        # After a failure, new turns must not bring the retry forward: the model is likely still down.
        return max(due, retry_at) if retry_at is not None else due


def retry_delay(attempts: int, base_seconds: float, max_seconds: float) -> float:
    """Seconds before retrying an extraction that failed `attempts` times in a row."""
    return float(min(max_seconds, base_seconds * 2.0 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class TurnText:
    """A stored turn as the model reads it."""

    seq: int
    turn_id: UUID
    user_text: str
    assistant_text: str

    @property
    def chars(self) -> int:
        """Length of both messages."""
        return len(self.user_text) + len(self.assistant_text)


def select_batch(turns: Sequence[TurnText], max_turns: int, max_chars: int) -> list[TurnText]:
    """The oldest turns that fit one extraction call (always at least one)."""
    batch: list[TurnText] = []
    used = 0
    for turn in turns[:max_turns]:
        if batch and used + turn.chars > max_chars:
            break
        batch.append(turn)
        used += turn.chars
    return batch


@dataclass(frozen=True)
class TextLimits:
    """Sizes of stored turns and of what one extraction call sees."""

    turn_text_max_chars: int = 4_000
    batch_max_turns: int = 40
    batch_max_chars: int = 24_000
    prompt_dossier_max_chars: int = 16_000


# --- extraction output --------------------------------------------------------------------------------


class ExtractedCharacter(BaseModel):
    """A character as the model reports it; lengths are enforced when merging, not by failing the call."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="the character's name, spelled as in the dossier when already there")
    description: str = Field("", description="who they are: new facts only")
    relationships: list[str] = Field(default_factory=list, description="e.g. 'sister of Mara'")
    character_arc: str = Field("", description="how they change over the story, if known")


class Extraction(BaseModel):
    """What new story information a batch of turns holds."""

    model_config = ConfigDict(extra="ignore")

    title: str | None = Field(None, description="a short working title for the story, or null")
    characters: list[ExtractedCharacter] = Field(default_factory=list)
    themes: list[str] = Field(default_factory=list)
    locations: list[str] = Field(default_factory=list)
    plot_points: list[str] = Field(default_factory=list)


# --- user edits ---------------------------------------------------------------------------------------


class UserOverrides(BaseModel):
    """What a user's edits decided, which later extractions must respect."""

    model_config = ConfigDict(extra="ignore")

    removed: dict[Section, list[str]] = Field(default_factory=dict, description="normalised items removed")
    removed_relationships: dict[str, list[str]] = Field(
        default_factory=dict, description="normalised relationships removed, by normalised character name"
    )
    pinned: dict[str, list[PinnedField]] = Field(
        default_factory=dict, description="character texts written by the user, by normalised character name"
    )


def _remember(existing: Iterable[str], added: Iterable[str], restored: Collection[str]) -> list[str]:
    out = [k for k in dict.fromkeys([*existing, *added]) if k not in restored]
    return out[-REMOVED_MAX_ITEMS:]


def apply_user_edit(
    before: DossierSnapshot | None, after: DossierSnapshot, overrides: UserOverrides | None = None
) -> UserOverrides:
    """The overrides after a user replaced `before` with `after`.

    Removed characters and items are remembered so no extraction adds them back (until the user adds them
    again). A character's description or arc the user wrote or changed is pinned: extractions leave it as is.
    """
    overrides = overrides or UserOverrides()
    before = before or DossierSnapshot()
    old = {norm(c.name): c for c in before.characters}
    new = {norm(c.name): c for c in after.characters}

    removed: dict[Section, list[str]] = {}
    removed["characters"] = _remember(overrides.removed.get("characters", []), old.keys() - new.keys(), new.keys())
    for section in LIST_SECTIONS:
        was = {norm(x) for x in getattr(before, section)}
        now = {norm(x) for x in getattr(after, section)}
        removed[section] = _remember(overrides.removed.get(section, []), sorted(was - now), now)

    relationships: dict[str, list[str]] = {}
    pinned: dict[str, list[PinnedField]] = {}
    for key, character in new.items():
        previous = old.get(key)
        fields: set[PinnedField] = set(overrides.pinned.get(key, [])) if previous is not None else set()
        rels_now = {norm(r) for r in character.relationships}
        gone: set[str] = set()
        if previous is None:
            if character.description.strip():
                fields.add("description")
            if character.character_arc.strip():
                fields.add("character_arc")
        else:
            if character.description != previous.description:
                fields.add("description")
            if character.character_arc != previous.character_arc:
                fields.add("character_arc")
            gone = {norm(r) for r in previous.relationships} - rels_now
        kept = overrides.removed_relationships.get(key, []) if previous is not None else []
        remembered = _remember(kept, sorted(gone), rels_now)
        if remembered:
            relationships[key] = remembered
        if fields:
            pinned[key] = sorted(fields)
    return UserOverrides(removed=removed, removed_relationships=relationships, pinned=pinned)


# --- merging ------------------------------------------------------------------------------------------


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?…])\s+", " ".join(text.split())) if s]


def merge_text(current: str, incoming: str, limit: int = TEXT_MAX) -> str:
    """`current` plus the sentences of `incoming` it does not already say, within `limit` characters."""
    incoming = clip(incoming, limit)
    if not incoming:
        return current
    if not current.strip():
        return incoming
    have, new = norm(current), norm(incoming)
    if new in have:
        return current
    if have in new:
        return incoming
    merged = current.rstrip()
    for sentence in _sentences(incoming):
        if norm(sentence) in norm(merged):
            continue
        candidate = f"{merged} {sentence}"
        if len(candidate) > limit:
            break
        merged = candidate
    return merged


def merge_items(
    current: Sequence[str], incoming: Iterable[str], removed: Collection[str], max_items: int, item_max: int
) -> list[str]:
    """`current` followed by the incoming items it lacks (by `norm`), minus what the user removed."""
    out = list(current)
    seen = {norm(x) for x in out}
    blocked = set(removed)
    for item in incoming:
        if len(out) >= max_items:
            break
        text = clip(item, item_max)
        key = norm(text)
        if not key or key in seen or key in blocked:
            continue
        seen.add(key)
        out.append(text)
    return out


def merge_extraction(
    current: DossierSnapshot, extraction: Extraction, overrides: UserOverrides | None = None
) -> DossierSnapshot:
    """The dossier after adding what an extraction found, keeping every decision the user made."""
    overrides = overrides or UserOverrides()
    characters = list(current.characters)
    index = {norm(c.name): i for i, c in enumerate(characters)}
    removed_characters = set(overrides.removed.get("characters", []))
    for found in extraction.characters:
        name = clip(found.name, NAME_MAX)
        key = norm(name)
        if not key or key in removed_characters:
            continue
        position = index.get(key)
        if position is None:
            if len(characters) >= SECTION_MAX_ITEMS["characters"]:
                continue
            index[key] = len(characters)
            characters.append(
                DossierCharacter(
                    name=name,
                    description=clip(found.description, TEXT_MAX),
                    relationships=merge_items([], found.relationships, (), RELATIONSHIPS_MAX_ITEMS, RELATIONSHIP_MAX),
                    character_arc=clip(found.character_arc, TEXT_MAX),
                )
            )
            continue
        existing = characters[position]
        pinned = set(overrides.pinned.get(key, []))
        characters[position] = DossierCharacter(
            name=existing.name,
            description=existing.description
            if "description" in pinned
            else merge_text(existing.description, found.description),
            relationships=merge_items(
                existing.relationships,
                found.relationships,
                overrides.removed_relationships.get(key, []),
                RELATIONSHIPS_MAX_ITEMS,
                RELATIONSHIP_MAX,
            ),
            character_arc=existing.character_arc
            if "character_arc" in pinned
            else merge_text(existing.character_arc, found.character_arc),
        )
    lists = {
        section: merge_items(
            getattr(current, section),
            getattr(extraction, section),
            overrides.removed.get(section, []),
            SECTION_MAX_ITEMS[section],
            ITEM_MAX,
        )
        for section in LIST_SECTIONS
    }
    return DossierSnapshot(characters=characters, **lists)


def changed_sections(before: DossierSnapshot | None, after: DossierSnapshot) -> list[Section]:
    """The sections whose content differs."""
    before = before or DossierSnapshot()
    return [s for s in SECTIONS if getattr(before, s) != getattr(after, s)]


def suggested_title(current: str, extraction: Extraction) -> str:
    """The dossier's title: the one it has, else the model's suggestion."""
    if current.strip() or not extraction.title:
        return current
    return clip(extraction.title, TITLE_MAX)


def known_terms(snapshot: DossierSnapshot, overrides: UserOverrides | None = None) -> list[str]:
    """Case-folded name words the dossier already holds (and names the user removed): not news in a turn."""
    terms: dict[str, None] = {}
    sources = [c.name for c in snapshot.characters] + list(snapshot.locations)
    if overrides is not None:
        sources += overrides.removed.get("characters", []) + overrides.removed.get("locations", [])
    for text in sources:
        for word in words(text):
            key = re.sub(r"['\u2019]s$", "", word.casefold())
            if len(key) >= 2:
                terms[key] = None
    return list(terms)[:KNOWN_TERMS_MAX]


def add_terms(existing: Sequence[str], added: Iterable[str]) -> list[str]:
    """Pending name words plus `added`, bounded."""
    return list(dict.fromkeys([*existing, *sorted(added)]))[-PENDING_TERMS_MAX:]


def snapshot_counts(snapshot: DossierSnapshot) -> tuple[int, int]:
    """Characters and themes, as listings show them."""
    return len(snapshot.characters), len(snapshot.themes)
