"""The procedural portrait: a deterministic retro-futuristic alien drawn from its traits, as SVG and as PNG.

A portrait is first composed as a `Scene` (a list of simple shapes), then rendered twice from that one
description: to SVG text, and to PNG with Pillow, so a character card can carry the same picture as a raster
image. Head shape, skin, eyes and features vary by species; the ornament and accent colours by archetype;
small facial markings by sex; the rest (hues, eye style, mouth, stars) by the seed. It needs no network.
"""

from __future__ import annotations

import asyncio
import colorsys
import functools
import hashlib
import io
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from PIL import Image, ImageDraw

from orrery_character_gen.domain import ARCHETYPES, SEXES, SPECIES, Traits
from orrery_shared.llm.images import GeneratedImage, ImageRequest

SIZE = 512
RGB = tuple[int, int, int]
Point = tuple[float, float]
PROVIDER = "procedural"
MODEL = "orrery-procedural-1"
SVG_TYPE = "image/svg+xml"

# --- shapes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paint:
    fill: RGB | None = None
    stroke: RGB | None = None
    width: float = 0.0
    opacity: float = 1.0


@dataclass(frozen=True)
class Ellipse:
    cx: float
    cy: float
    rx: float
    ry: float
    paint: Paint


@dataclass(frozen=True)
class Poly:
    points: tuple[Point, ...]
    paint: Paint
    closed: bool = True


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    r: float
    paint: Paint


Shape = Ellipse | Poly | Rect


@dataclass
class Scene:
    """Everything a portrait is made of, back to front."""

    sky_top: RGB
    sky_bottom: RGB
    shapes: list[Shape] = field(default_factory=list)
    title: str = ""

    def add(self, *shapes: Shape) -> None:
        self.shapes.extend(shapes)


# --- colour ---------------------------------------------------------------------------------------------


def hsl(h: float, s: float, lum: float) -> RGB:
    """An RGB colour from hue (degrees), saturation and lightness (0..1)."""
    r, g, b = colorsys.hls_to_rgb((h % 360) / 360, max(0.0, min(1.0, lum)), max(0.0, min(1.0, s)))
    return (round(r * 255), round(g * 255), round(b * 255))


def shade(c: RGB, factor: float) -> RGB:
    """Darker (factor < 1) or lighter (factor > 1)."""
    if factor <= 1:
        return (round(c[0] * factor), round(c[1] * factor), round(c[2] * factor))
    t = min(1.0, factor - 1)
    return (round(c[0] + (255 - c[0]) * t), round(c[1] + (255 - c[1]) * t), round(c[2] + (255 - c[2]) * t))


def hex_colour(c: RGB) -> str:
    return f"#{c[0]:02x}{c[1]:02x}{c[2]:02x}"


WHITE: RGB = (250, 248, 240)
INK: RGB = (24, 18, 40)
GOLD: RGB = (236, 190, 64)

# --- what each trait looks like ------------------------------------------------------------------------


@dataclass(frozen=True)
class Look:
    """A species' appearance: head plan, skin colour (h, s, l), eye styles and counts, features."""

    plan: str
    skin: tuple[float, float, float]
    eyes: tuple[str, ...]
    eye_counts: tuple[int, ...]
    features: tuple[str, ...] = ()
    translucent: bool = False


LOOKS: dict[str, Look] = {
    "cyborg": Look("oval", (25, 0.35, 0.68), ("round", "glow"), (2,), ("implant", "antenna")),
    "android": Look("box", (210, 0.10, 0.75), ("glow",), (2,), ("panels", "antenna")),
    "Martian": Look("dome", (110, 0.55, 0.55), ("round", "almond"), (2, 3), ("antennae",)),
    "Venusian": Look("oval", (300, 0.45, 0.70), ("almond", "round"), (2,), ("crest", "aura")),
    "Grey": Look("dome", (200, 0.08, 0.68), ("almond",), (2,), ()),
    "reptilian Saurian": Look("snout", (95, 0.45, 0.40), ("slit",), (2,), ("scales", "crest")),
    "insectoid Mantid": Look("mantis", (80, 0.60, 0.45), ("compound",), (2,), ("antennae", "mandibles")),
    "cephalopod": Look("dome", (330, 0.50, 0.55), ("slit", "round"), (2,), ("tentacles", "spots")),
    "crystalline Silicate": Look("diamond", (190, 0.70, 0.70), ("glow",), (1, 2, 3), ("facets", "aura")),
    "plasma being": Look("flame", (35, 1.00, 0.60), ("glow",), (2, 3), ("aura",), True),
    "fungal Mycelid": Look("round", (25, 0.35, 0.62), ("round",), (2,), ("cap",)),
    "sentient plant": Look("oval", (120, 0.45, 0.45), ("round", "almond"), (2,), ("leaves",)),
    "amphibian Batrachian": Look("wide", (150, 0.50, 0.50), ("round", "slit"), (2,), ("spots", "gills")),
    "avian Corvid": Look("oval", (230, 0.25, 0.25), ("round",), (2,), ("beak", "feathers")),
    "felinoid": Look("round", (30, 0.60, 0.55), ("slit",), (2,), ("ears", "whiskers", "stripes")),
    "lupine Canid": Look("oval", (25, 0.20, 0.45), ("round", "slit"), (2,), ("ears", "snout")),
    "gas-giant Nebulite": Look("cloud", (260, 0.60, 0.65), ("glow",), (2, 3), ("aura", "stars"), True),
    "deep-sea Abyssal": Look("oval", (200, 0.60, 0.35), ("round", "glow"), (2,), ("fins", "lure")),
    "gelatinous Ooze": Look("blob", (140, 0.70, 0.60), ("round",), (1, 2, 3), ("bubbles",), True),
    "clockwork automaton": Look("box", (40, 0.55, 0.50), ("round", "glow"), (2,), ("gears", "bolts")),
    "shadow Umbral": Look("tall", (270, 0.30, 0.15), ("glow",), (2,), ("wisps",)),
    "stone Lithoid": Look("angular", (30, 0.10, 0.45), ("glow", "round"), (2,), ("cracks",)),
    "arachnid": Look("round", (0, 0.30, 0.25), ("glow",), (6, 8), ("mandibles",)),
    "star-born Solarian": Look("round", (48, 0.90, 0.65), ("glow",), (2,), ("corona", "aura")),
    "ice Cryon": Look("diamond", (195, 0.60, 0.85), ("almond", "glow"), (2,), ("frost",)),
    "lava Magmoid": Look("angular", (10, 0.80, 0.30), ("glow",), (2,), ("cracks", "aura")),
    "moth-winged Lepidopteran": Look("oval", (45, 0.30, 0.75), ("compound",), (2,), ("plumes", "wings")),
    "hive drone": Look("mantis", (50, 0.80, 0.50), ("compound",), (2,), ("antennae", "stripes")),
    "ancient Elder": Look("tall", (170, 0.20, 0.55), ("almond", "round"), (3,), ("tentacles", "wrinkles")),
    "hologram": Look("oval", (185, 0.80, 0.60), ("glow",), (2,), ("scanlines",), True),
    "void walker": Look("tall", (250, 0.50, 0.10), ("glow",), (2,), ("stars", "wisps")),
    "coral Polypoid": Look("blob", (5, 0.70, 0.65), ("round",), (2, 3), ("coral",)),
    "dragonkin": Look("snout", (0, 0.60, 0.40), ("slit",), (2,), ("horns", "scales")),
}

# archetype -> (ornaments, accent hue)
STYLES: dict[str, tuple[tuple[str, ...], float]] = {
    "galactic emperor": (("cape", "crown"), 275),
    "smuggler": (("scarf", "hood"), 180),
    "xenobotanist": (("collar", "leaf"), 110),
    "bounty hunter": (("armor", "visor"), 15),
    "space pirate": (("collar", "bandana", "eyepatch"), 355),
    "starship engineer": (("overalls", "goggles"), 30),
    "interstellar diplomat": (("sash", "monocle"), 215),
    "mystic oracle": (("robe", "third_eye", "halo"), 285),
    "rebel pilot": (("flightsuit", "flight_helmet"), 25),
    "nebula cartographer": (("collar", "monocle", "star_pin"), 200),
    "asteroid miner": (("overalls", "hardhat"), 40),
    "cosmic bard": (("collar", "headphones"), 320),
    "intergalactic chef": (("apron", "chef_hat"), 0),
    "rogue scientist": (("labcoat", "goggles"), 160),
    "starport bartender": (("vest", "bowtie"), 340),
    "void priest": (("robe", "halo"), 250),
    "exiled royal": (("cape", "circlet"), 300),
    "cyber-hacker": (("hoodie", "visor_band"), 130),
    "archaeologist of dead worlds": (("collar", "wide_hat"), 35),
    "gladiator champion": (("armor", "crest_helmet"), 5),
    "comet courier": (("flightsuit", "winged_cap"), 190),
    "black-market merchant": (("vest", "chains", "earrings"), 50),
    "lighthouse keeper of the rim": (("scarf", "headlamp"), 45),
    "xenolinguist": (("collar", "headset"), 170),
    "terraformer": (("overalls", "hardhat"), 95),
    "retired war hero": (("armor", "medal", "scar"), 60),
    "zero-g dancer": (("collar", "ribbons"), 310),
    "galactic detective": (("trenchcoat", "fedora"), 30),
    "con artist": (("vest", "top_hat", "bowtie"), 265),
    "monastery hermit": (("robe", "hood", "beads"), 35),
    "station medic": (("labcoat", "medic_band"), 0),
    "quantum gambler": (("vest", "eyeshade"), 140),
    "star-whale herder": (("scarf", "cowboy_hat"), 205),
    "time traveller": (("trenchcoat", "goggles", "clock"), 45),
    "holo-streamer": (("hoodie", "headset", "antenna"), 295),
}

SEX_MARKS: dict[str, str] = {
    "female": "lashes",
    "male": "brow",
    "non-binary": "diamond",
    "agender": "none",
    "genderfluid": "cheek_stripes",
    "hermaphroditic": "lashes_brow",
    "sequentially hermaphroditic": "crescent",
    "tri-gendered": "three_dots",
    "parthenogenetic": "ring",
    "hive-neuter": "hexagon",
}

_PLANS = ("oval", "round", "dome", "tall", "angular", "diamond", "box", "blob", "snout", "wide")
_FEATURES = ("antennae", "spots", "stripes", "horns", "crest", "ears", "aura", "scales", "fins")
_ORNAMENTS = ("crown", "hood", "goggles", "monocle", "halo", "headset", "fedora", "circlet", "bandana")
_CLOTHES = ("collar", "robe", "vest", "armor", "scarf", "flightsuit", "cape", "hoodie")


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def look_for(species: str) -> Look:
    """The look of a catalogue species, or one derived from the name of any other (imported cards)."""
    look = LOOKS.get(species)
    if look is not None:
        return look
    rng = random.Random(_stable_int("species:" + species.casefold()))
    return Look(
        rng.choice(_PLANS),
        (rng.uniform(0, 360), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.7)),
        (rng.choice(("round", "almond", "slit", "glow", "compound")),),
        (rng.choice((1, 2, 2, 2, 3)),),
        tuple(rng.sample(_FEATURES, 2)),
    )


def style_for(archetype: str) -> tuple[tuple[str, ...], float]:
    """Clothes, ornaments and accent hue of an archetype (derived from the name when not in the catalogue)."""
    style = STYLES.get(archetype)
    if style is not None:
        return style
    rng = random.Random(_stable_int("archetype:" + archetype.casefold()))
    return (rng.choice(_CLOTHES), rng.choice(_ORNAMENTS)), rng.uniform(0, 360)


def infer_traits(prompt: str) -> Traits:
    """Traits named in a free-text image prompt (longest catalogue names first), for the registry path."""
    text = prompt.casefold()

    def find(values: tuple[str, ...], fallback: str) -> str:
        for value in sorted(values, key=len, reverse=True):
            if value.casefold() in text:
                return value
        return fallback

    rng = random.Random(_stable_int(prompt))
    return Traits(
        find(SEXES, rng.choice(SEXES)), find(SPECIES, rng.choice(SPECIES)), find(ARCHETYPES, rng.choice(ARCHETYPES))
    )


# --- geometry helpers ------------------------------------------------------------------------------------


def ring(
    cx: float, cy: float, rx: float, ry: float, n: int = 48, start: float = 0.0, end: float = 360.0
) -> list[Point]:
    """Points along an ellipse (angles in degrees, 0 = right, clockwise on screen)."""
    out = []
    for i in range(n + 1):
        a = math.radians(start + (end - start) * i / n)
        out.append((cx + rx * math.cos(a), cy + ry * math.sin(a)))
    return out


def superellipse(cx: float, cy: float, rx: float, ry: float, power: float, n: int = 64) -> list[Point]:
    out = []
    for i in range(n):
        a = 2 * math.pi * i / n
        c, s = math.cos(a), math.sin(a)
        x = abs(c) ** (2 / power) * rx * (1 if c >= 0 else -1)
        y = abs(s) ** (2 / power) * ry * (1 if s >= 0 else -1)
        out.append((cx + x, cy + y))
    return out


def egg(cx: float, cy: float, rx: float, ry: float, top: float, bottom: float, n: int = 64) -> list[Point]:
    """An ellipse whose upper half is `top` times as wide and lower half `bottom` times as wide."""
    out = []
    for i in range(n):
        a = 2 * math.pi * i / n
        s = math.sin(a)
        width = rx * (bottom if s > 0 else top)
        out.append((cx + width * math.cos(a), cy + ry * s))
    return out


def wobble(points: list[Point], cx: float, cy: float, rng: random.Random, amount: float, lobes: int) -> list[Point]:
    phase = rng.uniform(0, 2 * math.pi)
    out = []
    for i, (x, y) in enumerate(points):
        a = 2 * math.pi * i / len(points)
        k = 1 + amount * math.sin(lobes * a + phase)
        out.append((cx + (x - cx) * k, cy + (y - cy) * k))
    return out


def star_points(cx: float, cy: float, outer: float, inner: float, n: int, turn: float = -90.0) -> list[Point]:
    out = []
    for i in range(2 * n):
        r = outer if i % 2 == 0 else inner
        a = math.radians(turn + 180 * i / n)
        out.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return out


def fill(c: RGB, opacity: float = 1.0) -> Paint:
    return Paint(fill=c, opacity=opacity)


def line(c: RGB, width: float, opacity: float = 1.0) -> Paint:
    return Paint(stroke=c, width=width, opacity=opacity)


def outlined(c: RGB, edge: RGB, width: float = 4.0, opacity: float = 1.0) -> Paint:
    return Paint(fill=c, stroke=edge, width=width, opacity=opacity)


def poly(points: Sequence[Point], paint: Paint, closed: bool = True) -> Poly:
    return Poly(tuple((round(x, 1), round(y, 1)) for x, y in points), paint, closed)


# --- composition -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    cx: float
    cy: float
    rx: float
    ry: float

    @property
    def top(self) -> float:
        return self.cy - self.ry

    @property
    def bottom(self) -> float:
        return self.cy + self.ry


class Composer:
    """Builds the scene of one portrait."""

    def __init__(self, traits: Traits, seed: int) -> None:
        self.traits = traits
        self.rng = random.Random(seed)
        self.look = look_for(traits.species)
        self.ornaments, accent_hue = style_for(traits.archetype)
        h, s, lum = self.look.skin
        jitter = self.rng.uniform(-14, 14)
        self.skin = hsl(h + jitter, s, lum + self.rng.uniform(-0.05, 0.05))
        self.edge = shade(self.skin, 0.45)
        self.accent = hsl(accent_hue + self.rng.uniform(-10, 10), 0.65, 0.5)
        self.accent_dark = shade(self.accent, 0.55)
        self.glow = hsl(self.rng.choice((50, 170, 190, 300, 130)), 0.95, 0.65)
        sky_hue = accent_hue + 180 + self.rng.uniform(-40, 40)
        self.scene = Scene(
            sky_top=hsl(sky_hue, 0.55, 0.16),
            sky_bottom=hsl(sky_hue + 50, 0.65, 0.42),
            title=f"{traits.sex} {traits.species} {traits.archetype}",
        )
        plan = self.look.plan
        rx = {"wide": 128, "tall": 88, "mantis": 104, "box": 106}.get(plan, 104) * self.rng.uniform(0.93, 1.06)
        ry = {"wide": 106, "tall": 138, "dome": 126, "mantis": 122}.get(plan, 118) * self.rng.uniform(0.94, 1.05)
        self.head = Head(256, 236, rx, ry)

    def compose(self) -> Scene:
        self.backdrop()
        self.body()
        self.behind_head()
        self.head_shape()
        self.surface_features()
        self.eyes()
        self.mouth()
        self.sex_marks()
        self.front_features()
        self.head_ornaments()
        self.frame()
        return self.scene

    # backdrop: stars, a striped sun and a perspective grid
    def backdrop(self) -> None:
        rng, add = self.rng, self.scene.add
        for _ in range(46):
            r = rng.choice((1.0, 1.2, 1.6, 2.2))
            add(Ellipse(rng.uniform(8, 504), rng.uniform(8, 330), r, r, fill(WHITE, rng.uniform(0.4, 0.95))))
        sun_x = rng.choice((130.0, 382.0, 256.0))
        sun_y, sun_r = 300.0, rng.uniform(92, 120)
        top, bottom = hsl(rng.choice((45, 30, 330, 300)), 0.95, 0.62), hsl(rng.choice((330, 350, 280)), 0.85, 0.5)
        bands = 9
        for i in range(bands):
            y0 = sun_y - sun_r + 2 * sun_r * i / bands
            gap = 0.0 if i < 4 else 2.0 + i * 0.9
            y1 = sun_y - sun_r + 2 * sun_r * (i + 1) / bands - gap
            if y1 <= y0 or y0 > 380:
                continue
            t = i / (bands - 1)
            colour = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
            add(
                poly(_circle_slice(sun_x, sun_y, sun_r, y0, min(y1, 380)), fill((colour[0], colour[1], colour[2]), 0.9))
            )
        horizon = 380.0
        grid = hsl(self.scene.sky_bottom[0] + 300, 0.9, 0.6)
        add(Rect(0, horizon, SIZE, SIZE - horizon, 0, fill(shade(self.scene.sky_top, 0.8), 1.0)))
        for i in range(-9, 10):
            add(poly([(256 + i * 14, horizon), (256 + i * 120, SIZE)], line(grid, 1.6, 0.55), closed=False))
        y, step = horizon + 4, 6.0
        while y < SIZE:
            add(poly([(0, y), (SIZE, y)], line(grid, 1.4, 0.5), closed=False))
            step *= 1.45
            y += step

    def body(self) -> None:
        add, h = self.scene.add, self.head
        clothes = self.ornaments[0]
        neck_w = h.rx * (0.28 if self.look.plan != "wide" else 0.4)
        add(Rect(h.cx - neck_w, h.bottom - 30, 2 * neck_w, 70, 8, outlined(shade(self.skin, 0.85), self.edge, 3)))
        shoulders = [(60, 512), (96, 420), (170, 386), (342, 386), (416, 420), (452, 512)]
        cloth = self.accent if clothes not in ("labcoat", "apron") else (236, 236, 230)
        if clothes in ("robe", "hoodie", "trenchcoat", "cape"):
            cloth = shade(self.accent, 0.75)
        add(poly(shoulders, outlined(cloth, shade(cloth, 0.5), 4)))
        if clothes == "cape":
            add(poly([(120, 400), (170, 340), (200, 392)], outlined(GOLD, shade(GOLD, 0.6), 3)))
            add(poly([(392, 400), (342, 340), (312, 392)], outlined(GOLD, shade(GOLD, 0.6), 3)))
            add(poly([(150, 512), (200, 392), (312, 392), (362, 512)], fill(shade(cloth, 1.25))))
        elif clothes in ("collar", "flightsuit", "armor"):
            add(poly([(200, 388), (256, 450), (312, 388)], fill(shade(cloth, 0.6))))
            if clothes == "armor":
                for x in (150.0, 362.0):
                    add(Ellipse(x, 420, 46, 26, outlined(shade(cloth, 1.3), shade(cloth, 0.5), 3)))
            if clothes == "flightsuit":
                add(Rect(236, 450, 40, 62, 4, fill(shade(cloth, 0.5))))
                add(Ellipse(330, 440, 14, 14, outlined(GOLD, shade(GOLD, 0.5), 2)))
        elif clothes in ("robe", "hoodie"):
            add(poly([(210, 388), (256, 512), (302, 388)], fill(shade(cloth, 0.6))))
            if clothes == "hoodie":
                add(poly([(236, 430), (240, 480)], line(WHITE, 3), closed=False))
                add(poly([(276, 430), (272, 480)], line(WHITE, 3), closed=False))
        elif clothes in ("vest", "trenchcoat"):
            add(poly([(206, 388), (256, 512), (306, 388)], fill((238, 236, 228))))
            add(poly([(190, 392), (244, 512), (214, 512), (176, 400)], fill(shade(cloth, 0.7))))
            add(poly([(322, 392), (268, 512), (298, 512), (336, 400)], fill(shade(cloth, 0.7))))
        elif clothes in ("labcoat", "apron"):
            add(poly([(220, 388), (256, 470), (292, 388)], fill(self.accent)))
            if clothes == "apron":
                add(Rect(196, 440, 120, 72, 10, outlined((250, 250, 250), (190, 190, 190), 3)))
        elif clothes == "overalls":
            add(Rect(186, 420, 140, 92, 12, fill(shade(cloth, 0.7))))
            for x in (200.0, 312.0):
                add(poly([(x, 420), (x + (20 if x < 256 else -20), 386)], line(shade(cloth, 0.5), 10), closed=False))
        elif clothes == "scarf":
            add(poly([(176, 392), (336, 392), (320, 424), (192, 424)], outlined(self.accent_dark, INK, 3)))
            add(poly([(300, 420), (330, 500), (300, 504), (280, 424)], fill(self.accent_dark)))
        elif clothes == "sash":
            add(poly([(150, 400), (176, 390), (372, 512), (330, 512)], fill(GOLD)))

    def behind_head(self) -> None:
        add, h, rng, f = self.scene.add, self.head, self.rng, self.look.features
        if "aura" in f:
            for k, o in ((1.45, 0.12), (1.28, 0.18), (1.14, 0.24)):
                add(Ellipse(h.cx, h.cy, h.rx * k, h.ry * k, fill(self.glow, o)))
        if "halo" in self.ornaments:
            add(Ellipse(h.cx, h.top + 6, h.rx * 0.9, 22, Paint(stroke=GOLD, width=9, opacity=0.9)))
        if "corona" in f:
            add(poly(star_points(h.cx, h.cy, h.ry * 1.4, h.ry * 1.08, 14), fill(hsl(40, 1, 0.6), 0.8)))
        if "wings" in f:
            for side in (-1, 1):
                wing = [(h.cx, h.cy), (h.cx + side * 250, h.cy - 150), (h.cx + side * 230, h.cy + 60)]
                add(poly(wing, outlined(shade(self.skin, 0.9), self.edge, 4, 0.95)))
                add(Ellipse(h.cx + side * 190, h.cy - 60, 22, 22, fill(self.accent, 0.9)))
        if "hood" in self.ornaments:
            hood = egg(h.cx, h.cy + 10, h.rx * 1.28, h.ry * 1.22, 1.0, 1.15)
            add(poly(hood, outlined(shade(self.accent, 0.6), INK, 4)))
        if "tentacles" in f:
            for i in range(5):
                x = h.cx - h.rx * 0.7 + i * h.rx * 0.35
                sway = rng.uniform(-30, 30)
                pts = [(x + sway * math.sin(t / 3), h.bottom - 40 + t * 18) for t in range(9)]
                add(poly(pts, line(shade(self.skin, 0.8), 22 - i % 2 * 4), closed=False))
                add(poly(pts, line(self.edge, 3, 0.5), closed=False))
        if "fins" in f:
            for side in (-1, 1):
                x = h.cx + side * h.rx * 0.92
                fin = [(x, h.cy - 40), (x + side * 70, h.cy - 70), (x + side * 50, h.cy + 10), (x, h.cy + 30)]
                add(poly(fin, outlined(shade(self.skin, 1.2), self.edge, 3)))
        if "ears" in f:
            for side in (-1, 1):
                x = h.cx + side * h.rx * 0.62
                ear = [(x - side * 34, h.top + 40), (x + side * 30, h.top - 50), (x + side * 40, h.top + 60)]
                add(poly(ear, outlined(self.skin, self.edge, 4)))
                add(poly(_shrink(ear, 0.55), fill(hsl(340, 0.6, 0.75))))
        if "horns" in f:
            for side in (-1, 1):
                base = h.cx + side * h.rx * 0.45
                horn = [(base - 16, h.top + 30), (base + side * 60, h.top - 70), (base + 18, h.top + 26)]
                add(poly(horn, outlined((232, 222, 196), (120, 100, 70), 3)))
        if "crest" in f:
            spikes = [(h.cx + (i - 3) * 22, h.top + 12 - (40 - abs(i - 3) * 10)) for i in range(7)]
            pts = [(h.cx - 80, h.top + 30)]
            for i, (x, y) in enumerate(spikes):
                pts += [(x, y), (x + 11, h.top + 18 - (i % 2) * 6)]
            pts.append((h.cx + 80, h.top + 30))
            add(poly(pts, outlined(self.accent, self.accent_dark, 3)))
        if "feathers" in f:
            for i in range(5):
                a = -150 + i * 30
                tip = (h.cx + 150 * math.cos(math.radians(a)) * 0.6, h.top + 20 + 110 * math.sin(math.radians(a)) * 0.6)
                add(poly([(h.cx - 10, h.top + 40), tip, (h.cx + 10, h.top + 40)], fill(shade(self.skin, 0.7))))
        if "coral" in f:
            for side in (-1, 0, 1):
                x0 = h.cx + side * h.rx * 0.5
                branch = [(x0, h.top + 30), (x0 + side * 10, h.top - 40), (x0 + side * 40 + 20, h.top - 80)]
                add(poly(branch, line(shade(self.skin, 1.2), 14), closed=False))
                add(poly([(x0 + side * 10, h.top - 40), (x0 - 30, h.top - 70)], line(shade(self.skin, 1.2), 10), False))
        if "antenna" in self.ornaments:
            add(poly([(h.cx + h.rx * 0.6, h.top + 30), (h.cx + h.rx * 0.9, h.top - 60)], line(INK, 5), closed=False))
            add(Ellipse(h.cx + h.rx * 0.9, h.top - 64, 10, 10, fill(self.glow)))

    def head_shape(self) -> None:
        h, rng, plan = self.head, self.rng, self.look.plan
        pts: list[Point]
        if plan == "dome":
            pts = egg(h.cx, h.cy, h.rx, h.ry, 1.18, 0.62)
        elif plan == "tall":
            pts = egg(h.cx, h.cy, h.rx, h.ry, 0.95, 0.8)
        elif plan == "box":
            pts = superellipse(h.cx, h.cy, h.rx, h.ry * 0.95, 5.0)
        elif plan == "angular":
            pts = [(h.cx - h.rx * k, h.cy + h.ry * m) for k, m in ((1, -0.4), (0.5, -1), (-0.5, -1), (-1, -0.4))]
            pts += [(h.cx + h.rx * 0.85, h.cy + h.ry * 0.6), (h.cx, h.bottom), (h.cx - h.rx * 0.85, h.cy + h.ry * 0.6)]
        elif plan == "diamond":
            pts = [(h.cx, h.top - 10), (h.cx + h.rx, h.cy - 10), (h.cx + h.rx * 0.55, h.bottom - 20)]
            pts += [(h.cx, h.bottom + 6), (h.cx - h.rx * 0.55, h.bottom - 20), (h.cx - h.rx, h.cy - 10)]
        elif plan == "mantis":
            pts = [(h.cx - h.rx * 1.1, h.top + 20), (h.cx + h.rx * 1.1, h.top + 20), (h.cx, h.bottom)]
            pts = _rounded(pts, 6)
        elif plan == "flame":
            base = egg(h.cx, h.cy + 10, h.rx, h.ry * 0.9, 0.9, 1.0)
            pts = [(x, y - (max(0.0, h.cy - y) * 0.6 * (1 + math.sin(i * 1.3)))) for i, (x, y) in enumerate(base)]
        elif plan == "cloud":
            pts = wobble(ring(h.cx, h.cy, h.rx, h.ry, 72)[:-1], h.cx, h.cy, rng, 0.07, 9)
        elif plan == "blob":
            pts = wobble(egg(h.cx, h.cy, h.rx, h.ry, 0.9, 1.1), h.cx, h.cy, rng, 0.09, 3)
        elif plan == "wide":
            pts = superellipse(h.cx, h.cy, h.rx, h.ry, 2.6)
        elif plan == "snout":
            pts = egg(h.cx, h.cy, h.rx, h.ry, 1.0, 0.8)
        elif plan == "round":
            pts = ring(h.cx, h.cy, h.rx, h.ry * 0.95, 64)[:-1]
        else:
            pts = egg(h.cx, h.cy, h.rx, h.ry, 1.0, 0.86)
        opacity = 0.78 if self.look.translucent else 1.0
        self.scene.add(poly(pts, outlined(self.skin, self.edge, 5, opacity)))
        # a soft highlight gives the retro airbrushed look
        self.scene.add(Ellipse(h.cx - h.rx * 0.35, h.cy - h.ry * 0.45, h.rx * 0.28, h.ry * 0.16, fill(WHITE, 0.22)))

    def surface_features(self) -> None:
        add, h, rng, f = self.scene.add, self.head, self.rng, self.look.features
        if "spots" in f:
            for _ in range(9):
                a, d = rng.uniform(0, 2 * math.pi), rng.uniform(0.45, 0.85)
                r = rng.uniform(5, 12)
                add(Ellipse(h.cx + math.cos(a) * h.rx * d, h.cy + math.sin(a) * h.ry * d, r, r, fill(self.edge, 0.45)))
        if "stripes" in f:
            for side in (-1, 1):
                for k in range(3):
                    y = h.cy - 40 + k * 26
                    x0 = h.cx + side * h.rx * 0.95
                    add(poly([(x0, y), (x0 - side * 40, y + 8)], line(self.edge, 7, 0.7), closed=False))
        if "scales" in f:
            for row in range(3):
                for col in range(-2, 3):
                    x = h.cx + col * 26 + (row % 2) * 13
                    y = h.top + 30 + row * 18
                    add(poly(ring(x, y, 12, 9, 8, 0, 180), line(self.edge, 2.5, 0.6), closed=False))
        if "facets" in f:
            for dx, dy in ((-0.5, -0.3), (0.4, -0.5), (0.2, 0.3), (-0.3, 0.5)):
                p = (h.cx + dx * h.rx, h.cy + dy * h.ry)
                add(poly([p, (h.cx, h.cy - 10), (p[0] + 30, p[1] + 20)], line(shade(self.skin, 1.4), 2.5, 0.8), False))
        if "cracks" in f:
            glow = hsl(25, 1, 0.55) if "aura" in f or self.look.skin[0] < 20 else self.edge
            for _ in range(4):
                x, y = h.cx + rng.uniform(-0.6, 0.6) * h.rx, h.cy + rng.uniform(-0.6, 0.6) * h.ry
                pts = [(x, y)]
                for _ in range(3):
                    x, y = x + rng.uniform(-20, 20), y + rng.uniform(8, 22)
                    pts.append((x, y))
                add(poly(pts, line(glow, 3.5, 0.85), closed=False))
        if "panels" in f:
            add(poly([(h.cx - h.rx * 0.9, h.cy + 30), (h.cx + h.rx * 0.9, h.cy + 30)], line(self.edge, 3, 0.6), False))
            add(poly([(h.cx, h.top + 6), (h.cx, h.cy - 50)], line(self.edge, 3, 0.6), False))
        if "bolts" in f:
            for x in (h.cx - h.rx * 0.8, h.cx + h.rx * 0.8):
                for y in (h.cy - h.ry * 0.6, h.cy + h.ry * 0.55):
                    add(Ellipse(x, y, 6, 6, outlined(shade(self.skin, 1.3), self.edge, 2)))
        if "gears" in f:
            add(poly(star_points(h.cx + h.rx * 0.55, h.top + 34, 24, 17, 8), outlined(GOLD, self.edge, 2)))
            add(Ellipse(h.cx + h.rx * 0.55, h.top + 34, 7, 7, fill(self.edge)))
        if "implant" in f:
            add(Rect(h.cx + h.rx * 0.1, h.cy - 62, h.rx * 0.72, 74, 10, outlined((150, 160, 172), (60, 66, 80), 3)))
        if "gills" in f:
            for side in (-1, 1):
                for k in range(3):
                    x = h.cx + side * (h.rx * 0.7 - k * 10)
                    add(poly(ring(x, h.cy + 44, 5, 16, 8, 90, 270), line(self.edge, 2.5, 0.8), closed=False))
        if "wrinkles" in f:
            for k in range(3):
                y = h.top + 40 + k * 12
                add(poly(ring(h.cx, y + 30, 44 - k * 6, 30, 12, 200, 340), line(self.edge, 2, 0.6), closed=False))
        if "scanlines" in f:
            y = h.top
            while y < h.bottom:
                add(poly([(h.cx - h.rx, y), (h.cx + h.rx, y)], line(WHITE, 1.5, 0.25), closed=False))
                y += 9
        if "frost" in f:
            for k in range(7):
                x = h.cx - h.rx * 0.8 + k * h.rx * 0.27
                add(poly([(x - 8, h.top + 34), (x, h.top + 6 - (k % 2) * 16), (x + 8, h.top + 34)], fill(WHITE, 0.85)))

    def eyes(self) -> None:
        add, h, rng = self.scene.add, self.head, self.rng
        count = rng.choice(self.look.eye_counts)
        style = rng.choice(self.look.eyes)
        y = h.cy - h.ry * (0.02 if self.look.plan != "dome" else -0.08)
        if count >= 6:
            for i in range(count):
                row, col = divmod(i, count // 2)
                x = h.cx - 66 + col * (132 / max(1, count // 2 - 1))
                r = 13 if row == 0 and col in (1, count // 2 - 2) else 9
                add(Ellipse(x, y - 8 + row * 30, r, r, fill(INK)))
                add(Ellipse(x, y - 8 + row * 30, r * 0.6, r * 0.6, fill(self.glow, 0.9)))
            return
        spacing = {1: 0.0, 2: h.rx * 0.42, 3: h.rx * 0.48}[count]
        xs = {1: [h.cx], 2: [h.cx - spacing, h.cx + spacing], 3: [h.cx - spacing, h.cx, h.cx + spacing]}[count]
        size = {1: 34.0, 2: 26.0, 3: 20.0}[count] * rng.uniform(0.9, 1.15)
        if self.look.plan in ("dome", "mantis") and style in ("almond", "compound"):
            size *= 1.35
        iris = hsl(rng.choice((20, 50, 120, 190, 280, 330)), 0.7, 0.45)
        self.eye_spots: list[tuple[float, float, float]] = []
        for i, x in enumerate(xs):
            ey = y - (12 if count == 3 and i == 1 else 0)
            self.eye_spots.append((x, ey, size))
            tilt = -1 if x < h.cx else 1
            if style == "almond":
                pts = [(x - size * 1.2, ey - tilt * 0 + 6), (x - size * 0.2, ey - size * 0.9), (x + size * 1.1, ey - 8)]
                pts += [(x + size * 0.3, ey + size * 0.55)]
                if tilt > 0:
                    pts = [(2 * x - px, py) for px, py in pts]
                add(poly(_rounded(pts, 3), fill(INK)))
                add(Ellipse(x - size * 0.3, ey - size * 0.3, size * 0.18, size * 0.12, fill(WHITE, 0.9)))
            elif style == "slit":
                add(Ellipse(x, ey, size * 0.95, size * 0.75, outlined(hsl(55, 0.9, 0.55), INK, 3)))
                add(Ellipse(x, ey, size * 0.14, size * 0.65, fill(INK)))
            elif style == "glow":
                add(Ellipse(x, ey, size * 1.3, size * 1.0, fill(self.glow, 0.3)))
                add(Ellipse(x, ey, size * 0.85, size * 0.6, fill(self.glow)))
                add(Ellipse(x, ey, size * 0.4, size * 0.28, fill(WHITE, 0.9)))
            elif style == "compound":
                add(Ellipse(x, ey, size * 1.05, size * 1.25, outlined(shade(iris, 0.35), INK, 3)))
                for dx, dy in ((-0.3, -0.4), (0.25, -0.1), (-0.1, 0.35)):
                    add(Ellipse(x + dx * size, ey + dy * size, size * 0.16, size * 0.16, fill(WHITE, 0.55)))
            else:
                add(Ellipse(x, ey, size, size * 0.85, outlined(WHITE, INK, 3)))
                add(Ellipse(x + tilt * 2, ey + 2, size * 0.55, size * 0.55, fill(iris)))
                add(Ellipse(x + tilt * 2, ey + 2, size * 0.26, size * 0.26, fill(INK)))
                add(Ellipse(x - size * 0.2, ey - size * 0.25, size * 0.14, size * 0.14, fill(WHITE)))

    def mouth(self) -> None:
        add, h, rng = self.scene.add, self.head, self.rng
        if "beak" in self.look.features:
            beak = [(h.cx - 26, h.cy + 36), (h.cx + 26, h.cy + 36), (h.cx, h.cy + 96)]
            add(poly(beak, outlined(GOLD, shade(GOLD, 0.45), 3)))
            add(poly([(h.cx - 22, h.cy + 52), (h.cx + 22, h.cy + 52)], line(shade(GOLD, 0.45), 3), closed=False))
            return
        y = h.cy + h.ry * (0.52 if self.look.plan != "dome" else 0.42)
        if "snout" in self.look.features or self.look.plan == "snout":
            add(Ellipse(h.cx, y - 6, h.rx * 0.45, 30, outlined(shade(self.skin, 1.15), self.edge, 3)))
            for x in (h.cx - 12, h.cx + 12):
                add(Ellipse(x, y - 18, 5, 3.5, fill(INK)))
        kind = rng.choice(("smile", "smile", "smirk", "flat", "o", "fangs"))
        width = h.rx * rng.uniform(0.28, 0.42)
        if kind in ("smile", "fangs"):
            add(poly(ring(h.cx, y - 10, width, 18, 16, 20, 160), line(INK, 5), closed=False))
            if kind == "fangs":
                for x in (h.cx - width * 0.45, h.cx + width * 0.45):
                    add(poly([(x - 6, y + 4), (x + 6, y + 4), (x, y + 20)], fill(WHITE)))
        elif kind == "smirk":
            add(poly([(h.cx - width, y + 2), (h.cx + width * 0.4, y + 4), (h.cx + width, y - 8)], line(INK, 5), False))
        elif kind == "o":
            add(Ellipse(h.cx, y, 11, 13, outlined(shade(self.skin, 0.35), INK, 3)))
        else:
            add(poly([(h.cx - width * 0.8, y), (h.cx + width * 0.8, y)], line(INK, 5), closed=False))

    def sex_marks(self) -> None:
        add, h = self.scene.add, self.head
        mark = SEX_MARKS.get(self.traits.sex)
        if mark is None:
            mark = random.Random(_stable_int("sex:" + self.traits.sex.casefold())).choice(list(SEX_MARKS.values()))
        eyes = getattr(self, "eye_spots", [])
        forehead = (h.cx, h.cy - h.ry * 0.5)
        if mark in ("lashes", "lashes_brow"):
            for x, y, size in eyes:
                for k in (-1, 0, 1):
                    base = (x + k * size * 0.5, y - size * 0.8)
                    add(poly([base, (base[0] + k * 6, base[1] - 12)], line(INK, 3), closed=False))
            for x in (h.cx - h.rx * 0.55, h.cx + h.rx * 0.55):
                add(Ellipse(x, h.cy + h.ry * 0.3, 18, 10, fill(hsl(350, 0.8, 0.7), 0.45)))
        if mark in ("brow", "lashes_brow"):
            for x, y, size in eyes:
                add(poly([(x - size, y - size * 1.25), (x + size, y - size * 1.15)], line(self.edge, 6), closed=False))
        if mark == "diamond":
            cx, cy = forehead
            add(poly([(cx, cy - 12), (cx + 9, cy), (cx, cy + 12), (cx - 9, cy)], fill(self.accent)))
        elif mark == "cheek_stripes":
            for side in (-1, 1):
                x = h.cx + side * h.rx * 0.55
                for k, colour in enumerate((self.accent, self.glow)):
                    y = h.cy + h.ry * 0.25 + k * 10
                    add(poly([(x - 16, y), (x + 16, y - 4)], line(colour, 5), closed=False))
        elif mark == "crescent":
            cx, cy = forehead
            add(Ellipse(cx, cy, 12, 12, fill(self.accent)))
            add(Ellipse(cx + 5, cy - 2, 10, 10, fill(self.skin)))
        elif mark == "three_dots":
            cx, cy = forehead
            for dx in (-16, 0, 16):
                add(Ellipse(cx + dx, cy, 4.5, 4.5, fill(self.accent)))
        elif mark == "ring":
            cx, cy = forehead
            add(Ellipse(cx, cy, 10, 10, Paint(stroke=self.accent, width=3.5)))
        elif mark == "hexagon":
            cx, cy = forehead
            add(poly(ring(cx, cy, 11, 11, 6, -90, 270)[:-1], Paint(stroke=self.accent, width=3.5)))

    def front_features(self) -> None:
        add, h, rng, f = self.scene.add, self.head, self.rng, self.look.features
        if "antennae" in f:
            for side in (-1, 1):
                base = (h.cx + side * h.rx * 0.3, h.top + 14)
                tip = (h.cx + side * h.rx * 0.75, h.top - 70)
                add(poly([base, (base[0] + side * 10, h.top - 30), tip], line(self.edge, 5), closed=False))
                add(Ellipse(tip[0], tip[1], 11, 11, outlined(self.glow, self.edge, 3)))
        if "plumes" in f:
            for side in (-1, 1):
                base = (h.cx + side * 22, h.top + 10)
                tip = (h.cx + side * 110, h.top - 80)
                add(poly([base, tip], line(self.edge, 4), closed=False))
                for t in range(1, 6):
                    px = base[0] + (tip[0] - base[0]) * t / 6
                    py = base[1] + (tip[1] - base[1]) * t / 6
                    add(poly([(px, py), (px + side * 14, py + 12)], line(self.edge, 3), closed=False))
        if "mandibles" in f:
            for side in (-1, 1):
                mx = h.cx + side * 22
                m = [(mx, h.bottom - 34), (mx + side * 34, h.bottom), (mx + side * 6, h.bottom + 14)]
                add(poly(m, outlined(shade(self.skin, 0.6), INK, 3)))
        if "whiskers" in f:
            for side in (-1, 1):
                for k in (-1, 0, 1):
                    x0 = h.cx + side * 34
                    y0 = h.cy + h.ry * 0.38
                    add(poly([(x0, y0), (x0 + side * 90, y0 + k * 18 - 6)], line(WHITE, 2, 0.8), closed=False))
        if "lure" in f:
            tip = (h.cx + 60, h.top - 70)
            add(poly([(h.cx, h.top + 6), (h.cx + 30, h.top - 60), tip], line(self.edge, 4), closed=False))
            add(Ellipse(tip[0], tip[1], 18, 18, fill(self.glow, 0.35)))
            add(Ellipse(tip[0], tip[1], 9, 9, fill(self.glow)))
        if "bubbles" in f:
            for _ in range(6):
                r = rng.uniform(4, 10)
                add(
                    Ellipse(
                        h.cx + rng.uniform(-0.7, 0.7) * h.rx,
                        h.cy + rng.uniform(-0.8, 0.2) * h.ry,
                        r,
                        r,
                        Paint(stroke=WHITE, width=2, opacity=0.6),
                    )
                )
        if "wisps" in f:
            for side in (-1, 1):
                pts = [(h.cx + side * (h.rx * 0.8 + t * 6), h.cy - 40 + t * 22 + math.sin(t) * 8) for t in range(8)]
                add(poly(pts, line(shade(self.glow, 0.8), 4, 0.5), closed=False))
        if "stars" in f:
            for _ in range(7):
                x, y = h.cx + rng.uniform(-0.7, 0.7) * h.rx, h.cy + rng.uniform(-0.7, 0.6) * h.ry
                add(poly(star_points(x, y, 7, 2.5, 4), fill(WHITE, 0.85)))
        if "leaves" in f:
            for i in range(5):
                a = math.radians(-160 + i * 35)
                x, y = h.cx + math.cos(a) * h.rx * 0.95, h.cy + math.sin(a) * h.ry * 0.95
                add(poly(_leaf(x, y, 36, a), outlined(hsl(105, 0.6, 0.4), hsl(105, 0.6, 0.2), 2)))
        if "cap" in f:
            cap = ring(h.cx, h.top + 40, h.rx * 1.35, h.ry * 0.75, 32, 180, 360)
            add(poly(cap, outlined(hsl(5, 0.75, 0.5), hsl(5, 0.7, 0.25), 4)))
            for _ in range(6):
                r = rng.uniform(8, 16)
                add(
                    Ellipse(h.cx + rng.uniform(-0.9, 0.9) * h.rx, h.top + rng.uniform(-30, 20), r, r * 0.8, fill(WHITE))
                )

    def head_ornaments(self) -> None:
        for ornament in self.ornaments[1:]:
            draw = _ORNAMENT_DRAWERS.get(ornament)
            if draw is not None:
                draw(self)

    def frame(self) -> None:
        add = self.scene.add
        y = 0.0
        while y < SIZE:
            add(Rect(0, y, SIZE, 1.5, 0, fill(INK, 0.12)))
            y += 6
        add(Rect(10, 10, SIZE - 20, SIZE - 20, 28, Paint(stroke=self.accent, width=6, opacity=0.9)))
        add(Rect(20, 20, SIZE - 40, SIZE - 40, 22, Paint(stroke=WHITE, width=1.5, opacity=0.35)))


def _circle_slice(cx: float, cy: float, r: float, y0: float, y1: float, n: int = 10) -> list[Point]:
    def half(y: float) -> float:
        return math.sqrt(max(0.0, r * r - (y - cy) ** 2))

    ys = [y0 + (y1 - y0) * i / n for i in range(n + 1)]
    return [(cx + half(y), y) for y in ys] + [(cx - half(y), y) for y in reversed(ys)]


def _shrink(points: list[Point], k: float) -> list[Point]:
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    return [(mx + (x - mx) * k, my + (y - my) * k) for x, y in points]


def _rounded(points: list[Point], steps: int) -> list[Point]:
    """Chaikin corner cutting: a softer polygon."""
    pts = points
    for _ in range(min(steps, 4)):
        nxt: list[Point] = []
        for i, (x0, y0) in enumerate(pts):
            x1, y1 = pts[(i + 1) % len(pts)]
            nxt += [(0.75 * x0 + 0.25 * x1, 0.75 * y0 + 0.25 * y1), (0.25 * x0 + 0.75 * x1, 0.25 * y0 + 0.75 * y1)]
        pts = nxt
    return pts


def _leaf(x: float, y: float, length: float, angle: float) -> list[Point]:
    ca, sa = math.cos(angle), math.sin(angle)
    out = []
    for t in range(13):
        u = t / 12
        w = math.sin(math.pi * u) * length * 0.32
        out.append((u * length, w))
    for t in range(12, -1, -1):
        u = t / 12
        w = -math.sin(math.pi * u) * length * 0.32
        out.append((u * length, w))
    return [(x + px * ca - py * sa, y + px * sa + py * ca) for px, py in out]


# --- ornaments -----------------------------------------------------------------------------------------


def _crown(c: Composer) -> None:
    h = c.head
    base = h.top + 14
    pts = [(h.cx - 70, base + 24), (h.cx - 70, base - 26), (h.cx - 42, base - 4), (h.cx - 20, base - 44)]
    pts += [
        (h.cx, base - 8),
        (h.cx + 20, base - 44),
        (h.cx + 42, base - 4),
        (h.cx + 70, base - 26),
        (h.cx + 70, base + 24),
    ]
    c.scene.add(poly(pts, outlined(GOLD, shade(GOLD, 0.45), 4)))
    for x in (h.cx - 40, h.cx, h.cx + 40):
        c.scene.add(Ellipse(x, base + 8, 7, 7, fill(hsl(c.rng.choice((0, 200, 140)), 0.9, 0.5))))


def _circlet(c: Composer) -> None:
    h = c.head
    c.scene.add(poly(ring(h.cx, h.top + 46, h.rx * 0.98, 24, 24, 180, 360), line(GOLD, 7), closed=False))
    c.scene.add(
        poly(
            [(h.cx, h.top + 4), (h.cx + 11, h.top + 20), (h.cx, h.top + 36), (h.cx - 11, h.top + 20)],
            outlined(hsl(200, 0.9, 0.6), GOLD, 3),
        )
    )


def _hood(c: Composer) -> None:
    h = c.head
    c.scene.add(
        poly(ring(h.cx, h.cy + 6, h.rx * 1.22, h.ry * 1.16, 30, 180, 360), line(shade(c.accent, 0.45), 16), False)
    )


def _leaf_ornament(c: Composer) -> None:
    h = c.head
    x, y = h.cx + h.rx * 0.78, h.top + 40
    c.scene.add(poly([(x - 8, y + 30), (x + 10, y - 40)], line(hsl(100, 0.5, 0.3), 4), closed=False))
    for a in (-70.0, -20.0, -120.0):
        c.scene.add(poly(_leaf(x, y, 40, math.radians(a)), outlined(hsl(110, 0.65, 0.45), hsl(110, 0.6, 0.2), 2)))
    c.scene.add(Ellipse(x + 6, y - 8, 9, 9, fill(hsl(330, 0.8, 0.65))))


def _visor(c: Composer) -> None:
    h = c.head
    c.scene.add(
        poly(
            [*egg(h.cx, h.cy - 18, h.rx * 1.1, h.ry * 1.05, 1.0, 0.9)[32:], (h.cx - h.rx * 1.1, h.cy - 18)],
            outlined(shade(c.accent, 0.8), INK, 5),
        )
    )
    c.scene.add(Rect(h.cx - h.rx * 0.85, h.cy - 34, h.rx * 1.7, 40, 16, outlined((40, 220, 200), INK, 4, 0.85)))
    c.scene.add(Rect(h.cx - h.rx * 0.7, h.cy - 28, h.rx * 0.5, 8, 4, fill(WHITE, 0.6)))


def _bandana(c: Composer) -> None:
    h = c.head
    band = ring(h.cx, h.top + 60, h.rx * 1.0, 60, 24, 200, 340)
    c.scene.add(poly([*band, (h.cx + h.rx * 0.9, h.top + 50)], outlined(hsl(355, 0.8, 0.45), INK, 4)))
    for _ in range(5):
        c.scene.add(Ellipse(h.cx + c.rng.uniform(-60, 60), h.top + c.rng.uniform(10, 34), 4, 4, fill(WHITE)))
    x = h.cx + h.rx * 0.95
    c.scene.add(poly([(x, h.top + 50), (x + 40, h.top + 80), (x + 14, h.top + 90)], fill(hsl(355, 0.8, 0.45))))


def _eyepatch(c: Composer) -> None:
    h = c.head
    eyes = getattr(c, "eye_spots", [])
    x, y, size = eyes[0] if eyes else (h.cx - h.rx * 0.4, h.cy, 26.0)
    c.scene.add(poly([(h.cx - h.rx, h.cy - 60), (h.cx + h.rx, h.cy - 20)], line(INK, 4), closed=False))
    c.scene.add(Ellipse(x, y, size * 1.25, size * 1.1, fill(INK)))


def _goggles(c: Composer) -> None:
    h = c.head
    y = h.top + 48
    c.scene.add(poly([(h.cx - h.rx, y), (h.cx + h.rx, y)], line((70, 50, 40), 10), closed=False))
    for x in (h.cx - 36, h.cx + 36):
        c.scene.add(Ellipse(x, y, 30, 24, outlined((190, 140, 60), (70, 50, 40), 5)))
        c.scene.add(Ellipse(x, y, 20, 15, fill(hsl(190, 0.7, 0.55), 0.9)))
        c.scene.add(Ellipse(x - 7, y - 5, 5, 4, fill(WHITE, 0.9)))


def _monocle(c: Composer) -> None:
    eyes = getattr(c, "eye_spots", [])
    x, y, size = eyes[-1] if eyes else (c.head.cx + 40, c.head.cy, 26.0)
    c.scene.add(Ellipse(x, y, size * 1.35, size * 1.35, Paint(stroke=GOLD, width=5)))
    c.scene.add(poly([(x + size * 1.3, y + 8), (x + size * 2, y + 120)], line(GOLD, 2), closed=False))


def _third_eye(c: Composer) -> None:
    h = c.head
    x, y = h.cx, h.cy - h.ry * 0.55
    c.scene.add(poly([(x - 26, y), (x, y - 16), (x + 26, y), (x, y + 16)], outlined(WHITE, INK, 3)))
    c.scene.add(Ellipse(x, y, 9, 9, fill(c.accent)))
    c.scene.add(Ellipse(x, y, 4, 4, fill(INK)))


def _flight_helmet(c: Composer) -> None:
    h = c.head
    shell = ring(h.cx, h.cy, h.rx * 1.12, h.ry * 1.1, 30, 180, 360)
    c.scene.add(poly(shell, outlined((236, 232, 222), (90, 90, 100), 5)))
    c.scene.add(Rect(h.cx - 14, h.top - 12, 28, 60, 8, fill(c.accent)))
    for x in (h.cx - h.rx * 1.08, h.cx + h.rx * 1.08):
        c.scene.add(Ellipse(x, h.cy, 22, 34, outlined(c.accent, INK, 4)))


def _hardhat(c: Composer) -> None:
    h = c.head
    colour = hsl(45 if c.traits.archetype != "terraformer" else 25, 0.95, 0.55)
    dome = ring(h.cx, h.top + 40, h.rx * 0.95, h.ry * 0.55, 30, 180, 360)
    c.scene.add(poly(dome, outlined(colour, shade(colour, 0.5), 4)))
    c.scene.add(Rect(h.cx - h.rx * 1.15, h.top + 34, h.rx * 2.3, 16, 8, outlined(colour, shade(colour, 0.5), 3)))
    if c.traits.archetype == "asteroid miner":
        c.scene.add(Ellipse(h.cx, h.top + 4, 16, 14, outlined(WHITE, INK, 3)))
        c.scene.add(
            poly(
                [(h.cx - 14, h.top), (h.cx - 150, h.top - 60), (h.cx + 150, h.top - 60), (h.cx + 14, h.top)],
                fill((255, 250, 200), 0.18),
            )
        )


def _headlamp(c: Composer) -> None:
    h = c.head
    c.scene.add(poly(ring(h.cx, h.top + 56, h.rx, 30, 24, 180, 360), line(INK, 8), closed=False))
    c.scene.add(Ellipse(h.cx, h.top + 26, 20, 16, outlined(hsl(50, 1, 0.7), INK, 3)))
    c.scene.add(
        poly(
            [(h.cx - 18, h.top + 20), (h.cx - 190, h.top - 70), (h.cx + 190, h.top - 70), (h.cx + 18, h.top + 20)],
            fill((255, 240, 170), 0.2),
        )
    )


def _headphones(c: Composer) -> None:
    h = c.head
    c.scene.add(poly(ring(h.cx, h.cy - 10, h.rx * 1.1, h.ry * 1.05, 30, 180, 360), line(INK, 12), closed=False))
    for x in (h.cx - h.rx * 1.08, h.cx + h.rx * 1.08):
        c.scene.add(Rect(x - 22, h.cy - 40, 44, 70, 18, outlined(c.accent, INK, 4)))


def _headset(c: Composer) -> None:
    _headphones(c)
    h = c.head
    x = h.cx + h.rx * 1.08
    c.scene.add(poly([(x, h.cy + 10), (x - 40, h.cy + 80), (h.cx + 40, h.cy + 86)], line(INK, 5), closed=False))
    c.scene.add(Ellipse(h.cx + 36, h.cy + 86, 10, 8, fill(c.glow)))


def _chef_hat(c: Composer) -> None:
    h = c.head
    c.scene.add(Rect(h.cx - 64, h.top - 20, 128, 50, 6, outlined(WHITE, (180, 180, 180), 3)))
    for dx in (-44, 0, 44):
        c.scene.add(Ellipse(h.cx + dx, h.top - 44, 40, 36, outlined(WHITE, (180, 180, 180), 3)))


def _bowtie(c: Composer) -> None:
    y = c.head.bottom + 34
    colour = hsl(c.rng.choice((0, 280, 45)), 0.8, 0.45)
    c.scene.add(poly([(256, y), (222, y - 18), (222, y + 18)], outlined(colour, INK, 3)))
    c.scene.add(poly([(256, y), (290, y - 18), (290, y + 18)], outlined(colour, INK, 3)))
    c.scene.add(Ellipse(256, y, 8, 8, fill(shade(colour, 0.6))))


def _halo(c: Composer) -> None:
    pass  # drawn behind the head


def _visor_band(c: Composer) -> None:
    h = c.head
    c.scene.add(Rect(h.cx - h.rx * 1.02, h.cy - 30, h.rx * 2.04, 36, 14, outlined((20, 30, 30), INK, 3, 0.92)))
    for i in range(6):
        c.scene.add(Rect(h.cx - h.rx * 0.8 + i * h.rx * 0.28, h.cy - 20, 14, 6, 2, fill(hsl(130, 1, 0.55))))


def _wide_hat(c: Composer) -> None:
    h = c.head
    brown = (140, 96, 52)
    c.scene.add(Ellipse(h.cx, h.top + 30, h.rx * 1.6, 26, outlined(brown, shade(brown, 0.5), 4)))
    c.scene.add(poly(ring(h.cx, h.top + 28, h.rx * 0.78, 70, 24, 180, 360), outlined(brown, shade(brown, 0.5), 4)))
    c.scene.add(Rect(h.cx - h.rx * 0.78, h.top + 10, h.rx * 1.56, 14, 2, fill(shade(brown, 0.55))))


def _cowboy_hat(c: Composer) -> None:
    h = c.head
    tan = (196, 152, 96)
    brim = ring(h.cx, h.top + 26, h.rx * 1.55, 34, 30, 0, 180)
    c.scene.add(
        poly([(h.cx - h.rx * 1.6, h.top), *brim[::-1], (h.cx + h.rx * 1.6, h.top)], outlined(tan, shade(tan, 0.5), 4))
    )
    c.scene.add(
        poly(
            [
                (h.cx - 70, h.top + 20),
                (h.cx - 60, h.top - 60),
                (h.cx, h.top - 44),
                (h.cx + 60, h.top - 60),
                (h.cx + 70, h.top + 20),
            ],
            outlined(tan, shade(tan, 0.5), 4),
        )
    )


def _crest_helmet(c: Composer) -> None:
    h = c.head
    bronze = (196, 140, 70)
    c.scene.add(
        poly(ring(h.cx, h.cy - 8, h.rx * 1.08, h.ry * 1.02, 30, 180, 360), outlined(bronze, shade(bronze, 0.5), 5))
    )
    plume = ring(h.cx, h.top - 6, 30, 70, 20, 180, 360)
    c.scene.add(
        poly([(h.cx - 90, h.top + 10), *plume, (h.cx + 90, h.top + 10)], outlined(hsl(355, 0.85, 0.45), INK, 3))
    )


def _winged_cap(c: Composer) -> None:
    h = c.head
    c.scene.add(poly(ring(h.cx, h.top + 44, h.rx * 0.92, 58, 24, 180, 360), outlined(c.accent, INK, 4)))
    for side in (-1, 1):
        x = h.cx + side * h.rx * 0.85
        wing = [(x, h.top + 30), (x + side * 70, h.top - 20), (x + side * 50, h.top + 4), (x + side * 60, h.top + 20)]
        c.scene.add(poly(wing, outlined(WHITE, (160, 160, 170), 3)))


def _chains(c: Composer) -> None:
    for k in range(2):
        pts = ring(256, c.head.bottom + 30 + k * 18, 80 - k * 10, 40, 20, 10, 170)
        c.scene.add(poly(pts, line(GOLD, 6 - k), closed=False))
    c.scene.add(Ellipse(256, c.head.bottom + 86, 14, 14, outlined(GOLD, shade(GOLD, 0.5), 3)))


def _earrings(c: Composer) -> None:
    h = c.head
    for x in (h.cx - h.rx * 0.98, h.cx + h.rx * 0.98):
        c.scene.add(Ellipse(x, h.cy + 40, 10, 14, Paint(stroke=GOLD, width=4)))


def _medal(c: Composer) -> None:
    x, y = 320.0, c.head.bottom + 70
    c.scene.add(poly([(x - 12, y - 40), (x + 12, y - 40), (x + 8, y - 10), (x - 8, y - 10)], fill(hsl(0, 0.8, 0.45))))
    c.scene.add(poly(star_points(x, y + 4, 20, 9, 5), outlined(GOLD, shade(GOLD, 0.5), 2)))


def _scar(c: Composer) -> None:
    h = c.head
    x, y = h.cx + h.rx * 0.35, h.cy - 40
    c.scene.add(poly([(x - 14, y - 30), (x + 16, y + 50)], line(shade(c.skin, 0.55), 5), closed=False))
    for t in (0.25, 0.5, 0.75):
        px, py = x - 14 + 30 * t, y - 30 + 80 * t
        c.scene.add(poly([(px - 8, py + 3), (px + 8, py - 3)], line(shade(c.skin, 0.55), 3), closed=False))


def _ribbons(c: Composer) -> None:
    h = c.head
    for side, hue in ((-1, 320.0), (1, 190.0)):
        pts = [(h.cx + side * (h.rx * 0.7 + t * 16), h.top + 20 + t * 26 + math.sin(t * 1.4) * 16) for t in range(10)]
        c.scene.add(poly(pts, line(hsl(hue, 0.85, 0.6), 9, 0.9), closed=False))


def _fedora(c: Composer) -> None:
    h = c.head
    grey = (74, 70, 80)
    c.scene.add(Ellipse(h.cx, h.top + 30, h.rx * 1.35, 22, outlined(grey, INK, 4)))
    crown = [
        (h.cx - 70, h.top + 28),
        (h.cx - 60, h.top - 40),
        (h.cx, h.top - 26),
        (h.cx + 60, h.top - 40),
        (h.cx + 70, h.top + 28),
    ]
    c.scene.add(poly(crown, outlined(grey, INK, 4)))
    c.scene.add(Rect(h.cx - 68, h.top + 6, 136, 16, 2, fill(shade(c.accent, 0.7))))


def _top_hat(c: Composer) -> None:
    h = c.head
    c.scene.add(Ellipse(h.cx, h.top + 28, h.rx * 1.15, 18, outlined(INK, (80, 80, 90), 3)))
    c.scene.add(Rect(h.cx - 60, h.top - 90, 120, 120, 6, outlined(INK, (80, 80, 90), 3)))
    c.scene.add(Rect(h.cx - 60, h.top + 2, 120, 16, 0, fill(c.accent)))


def _beads(c: Composer) -> None:
    pts = ring(256, c.head.bottom + 24, 70, 60, 14, 20, 160)
    for x, y in pts:
        c.scene.add(Ellipse(x, y, 7, 7, outlined(hsl(25, 0.6, 0.4), INK, 1.5)))


def _medic_band(c: Composer) -> None:
    h = c.head
    c.scene.add(poly(ring(h.cx, h.top + 62, h.rx, 30, 24, 180, 360), line(WHITE, 16), closed=False))
    x, y = h.cx, h.top + 34
    c.scene.add(Rect(x - 5, y - 14, 10, 28, 1, fill(hsl(0, 0.85, 0.5))))
    c.scene.add(Rect(x - 14, y - 5, 28, 10, 1, fill(hsl(0, 0.85, 0.5))))


def _eyeshade(c: Composer) -> None:
    h = c.head
    c.scene.add(
        poly(
            [
                (h.cx - h.rx, h.top + 52),
                (h.cx + h.rx, h.top + 52),
                (h.cx + h.rx * 0.8, h.top + 86),
                (h.cx - h.rx * 0.8, h.top + 86),
            ],
            outlined(hsl(140, 0.8, 0.4), INK, 3, 0.85),
        )
    )


def _star_pin(c: Composer) -> None:
    c.scene.add(poly(star_points(200, c.head.bottom + 60, 16, 7, 4), outlined(WHITE, c.accent_dark, 2)))


def _clock(c: Composer) -> None:
    x, y = 256.0, c.head.bottom + 84
    c.scene.add(poly([(256, c.head.bottom + 40), (x, y - 20)], line(GOLD, 3), closed=False))
    c.scene.add(Ellipse(x, y, 20, 20, outlined(WHITE, GOLD, 4)))
    c.scene.add(poly([(x, y), (x, y - 13), (x, y), (x + 9, y + 4)], line(INK, 2.5), closed=False))


def _antenna(c: Composer) -> None:
    pass  # drawn behind the head


_ORNAMENT_DRAWERS: dict[str, Callable[[Composer], None]] = {
    "crown": _crown,
    "circlet": _circlet,
    "hood": _hood,
    "leaf": _leaf_ornament,
    "visor": _visor,
    "bandana": _bandana,
    "eyepatch": _eyepatch,
    "goggles": _goggles,
    "monocle": _monocle,
    "third_eye": _third_eye,
    "halo": _halo,
    "flight_helmet": _flight_helmet,
    "hardhat": _hardhat,
    "headlamp": _headlamp,
    "headphones": _headphones,
    "headset": _headset,
    "chef_hat": _chef_hat,
    "bowtie": _bowtie,
    "visor_band": _visor_band,
    "wide_hat": _wide_hat,
    "cowboy_hat": _cowboy_hat,
    "crest_helmet": _crest_helmet,
    "winged_cap": _winged_cap,
    "chains": _chains,
    "earrings": _earrings,
    "medal": _medal,
    "scar": _scar,
    "ribbons": _ribbons,
    "fedora": _fedora,
    "top_hat": _top_hat,
    "beads": _beads,
    "medic_band": _medic_band,
    "eyeshade": _eyeshade,
    "star_pin": _star_pin,
    "clock": _clock,
    "antenna": _antenna,
}


def compose(traits: Traits, seed: int) -> Scene:
    """The scene of the portrait of `traits` (the same traits and seed always give the same scene)."""
    return Composer(traits, seed).compose()


# --- rendering ---------------------------------------------------------------------------------------------


def _num(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _svg_paint(paint: Paint) -> str:
    parts = [f'fill="{hex_colour(paint.fill)}"' if paint.fill else 'fill="none"']
    if paint.stroke and paint.width > 0:
        parts.append(f'stroke="{hex_colour(paint.stroke)}" stroke-width="{_num(paint.width)}"')
        parts.append('stroke-linejoin="round" stroke-linecap="round"')
    if paint.opacity < 1:
        parts.append(f'opacity="{paint.opacity:.2f}"')
    return " ".join(parts)


def _svg_shapes(shapes: list[Shape]) -> Iterator[str]:
    for shape in shapes:
        paint = _svg_paint(shape.paint)
        if isinstance(shape, Ellipse):
            yield (
                f'<ellipse cx="{_num(shape.cx)}" cy="{_num(shape.cy)}" rx="{_num(shape.rx)}" '
                f'ry="{_num(shape.ry)}" {paint}/>'
            )
        elif isinstance(shape, Rect):
            yield (
                f'<rect x="{_num(shape.x)}" y="{_num(shape.y)}" width="{_num(shape.w)}" height="{_num(shape.h)}" '
                f'rx="{_num(shape.r)}" {paint}/>'
            )
        else:
            points = " ".join(f"{_num(x)},{_num(y)}" for x, y in shape.points)
            tag = "polygon" if shape.closed else "polyline"
            yield f'<{tag} points="{points}" {paint}/>'


def render_svg(scene: Scene) -> bytes:
    """The scene as a standalone SVG document."""
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {SIZE} {SIZE}" width="{SIZE}" height="{SIZE}" '
        f'role="img" aria-label="{escape(scene.title, {chr(34): "&quot;"})}">'
        f"<title>{escape(scene.title)}</title>"
        '<defs><linearGradient id="sky" x1="0" y1="0" x2="0" y2="1">'
        f'<stop offset="0" stop-color="{hex_colour(scene.sky_top)}"/>'
        f'<stop offset="1" stop-color="{hex_colour(scene.sky_bottom)}"/>'
        "</linearGradient></defs>"
        f'<rect width="{SIZE}" height="{SIZE}" fill="url(#sky)"/>'
    )
    return (head + "".join(_svg_shapes(scene.shapes)) + "</svg>").encode()


def render_png(scene: Scene, size: int = SIZE, supersample: int = 2) -> bytes:
    """The scene as a PNG (drawn at `supersample` times the size, then box-downscaled for smooth edges)."""
    scale = size * supersample / SIZE
    canvas = size * supersample
    top, bottom = scene.sky_top, scene.sky_bottom
    steps = 256
    strip = Image.new("RGB", (1, steps))
    strip.putdata(
        [tuple(round(a + (b - a) * i / (steps - 1)) for a, b in zip(top, bottom, strict=True)) for i in range(steps)]
    )
    image = strip.resize((canvas, canvas), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image, "RGBA")
    for shape in scene.shapes:
        _draw_shape(draw, shape, scale)
    if supersample > 1:
        image = image.reduce(supersample)
    out = io.BytesIO()
    # Fast compression: the picture is re-rendered cheaply and served rarely, so CPU matters more than bytes.
    image.save(out, format="PNG", compress_level=3)
    return out.getvalue()


def _rgba(c: RGB, opacity: float) -> tuple[int, int, int, int]:
    return (c[0], c[1], c[2], round(255 * opacity))


def _draw_shape(draw: ImageDraw.ImageDraw, shape: Shape, k: float) -> None:
    p = shape.paint
    fill_colour = _rgba(p.fill, p.opacity) if p.fill else None
    stroke = _rgba(p.stroke, p.opacity) if p.stroke and p.width > 0 else None
    width = max(1, round(p.width * k))
    if isinstance(shape, Ellipse):
        box = [
            (shape.cx - shape.rx) * k,
            (shape.cy - shape.ry) * k,
            (shape.cx + shape.rx) * k,
            (shape.cy + shape.ry) * k,
        ]
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            return
        draw.ellipse(box, fill=fill_colour, outline=stroke, width=width if stroke else 0)
    elif isinstance(shape, Rect):
        box = [shape.x * k, shape.y * k, (shape.x + shape.w) * k, (shape.y + shape.h) * k]
        radius = min(shape.r * k, (box[2] - box[0]) / 2, (box[3] - box[1]) / 2)
        draw.rounded_rectangle(box, radius=radius, fill=fill_colour, outline=stroke, width=width if stroke else 0)
    else:
        points = [(x * k, y * k) for x, y in shape.points]
        if len(points) < 2:
            return
        if shape.closed:
            if fill_colour is not None:
                draw.polygon(points, fill=fill_colour)
            if stroke is not None:
                draw.line([*points, points[0]], fill=stroke, width=width, joint="curve")
        elif stroke is not None:
            draw.line(points, fill=stroke, width=width, joint="curve")


# --- the image provider ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProceduralArt:
    """One procedural portrait in both formats."""

    svg: bytes
    png: bytes


def paint(traits: Traits, seed: int, png_size: int = SIZE) -> ProceduralArt:
    """Compose the portrait of `traits` once and render it as SVG and PNG."""
    scene = compose(traits, seed)
    return ProceduralArt(svg=render_svg(scene), png=render_png(scene, png_size))


@functools.lru_cache(maxsize=128)
def _cached_png(traits: Traits, seed: int, size: int) -> bytes:
    # The same few cards (presets above all) are asked for again and again; a PNG is ~40 kB.
    return render_png(compose(traits, seed), size)


class ProceduralPortraits:
    """An image provider drawing procedural portraits; selectable as "procedural" in the image registry.

    `generate` (the registry's protocol) reads the traits from the prompt and answers PNG; the portrait chain
    calls `svg` with the real traits, and `png` only when a PNG is asked for (a character card): the same traits
    and seed always give the same picture, so the raster version never needs storing.
    """

    name = PROVIDER

    def __init__(self, png_size: int = SIZE) -> None:
        self.png_size = png_size

    def svg(self, traits: Traits, seed: int) -> bytes:
        """The SVG portrait of `traits` (about a millisecond)."""
        return render_svg(compose(traits, seed))

    def png(self, traits: Traits, seed: int) -> bytes:
        """The same portrait as PNG (CPU-bound, tens of milliseconds: run it off the event loop)."""
        return _cached_png(traits, seed, self.png_size)

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        """A PNG portrait of the traits named in the prompt."""
        started = time.monotonic()
        seed = request.seed if request.seed is not None else _stable_int(request.prompt)
        data = await asyncio.to_thread(self.png, infer_traits(request.prompt), seed)
        return GeneratedImage(
            data=data, mime_type="image/png", provider=PROVIDER, model=MODEL, latency_s=time.monotonic() - started
        )

    async def aclose(self) -> None:
        """Nothing to release."""
