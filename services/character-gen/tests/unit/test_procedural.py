"""The procedural portrait: deterministic, trait-driven, valid SVG and PNG."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

from PIL import Image

from orrery_character_gen.domain import ARCHETYPES, SEXES, SPECIES, Traits
from orrery_character_gen.procedural import (
    LOOKS,
    SEX_MARKS,
    STYLES,
    ProceduralPortraits,
    compose,
    infer_traits,
    paint,
    render_svg,
)
from orrery_shared.llm import ImageRequest, build_image_generator, register_image_provider

EMPEROR = Traits("female", "cyborg", "galactic emperor")


def test_the_same_traits_and_seed_always_draw_the_same_portrait() -> None:
    first, second = paint(EMPEROR, 42, png_size=64), paint(EMPEROR, 42, png_size=64)
    assert first.svg == second.svg
    assert first.png == second.png


def test_species_archetype_sex_and_seed_each_change_the_portrait() -> None:
    base = render_svg(compose(EMPEROR, 1))
    assert render_svg(compose(Traits("female", "cephalopod", "galactic emperor"), 1)) != base
    assert render_svg(compose(Traits("female", "cyborg", "smuggler"), 1)) != base
    assert render_svg(compose(Traits("male", "cyborg", "galactic emperor"), 1)) != base
    assert render_svg(compose(EMPEROR, 2)) != base


def test_the_svg_is_well_formed_and_names_the_traits() -> None:
    svg = paint(EMPEROR, 5, png_size=64).svg
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox") == "0 0 512 512"
    assert root.find("{http://www.w3.org/2000/svg}title").text == "female cyborg galactic emperor"  # type: ignore[union-attr]
    assert len(root) > 60  # a real drawing, not a placeholder


def test_the_png_rendition_opens_in_pillow_at_the_requested_size() -> None:
    png = paint(EMPEROR, 5, png_size=128).png
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == (128, 128)
        # not a flat fill: a portrait has many colours
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 50


def test_every_catalogue_trait_has_a_look_a_style_and_a_mark() -> None:
    assert set(LOOKS) == set(SPECIES)
    assert set(STYLES) == set(ARCHETYPES)
    assert set(SEX_MARKS) == set(SEXES)


def test_traits_outside_the_catalogue_still_draw_deterministically() -> None:
    odd = Traits("unspecified", "space elf", "accordion tuner")
    assert paint(odd, 3, png_size=32).svg == paint(odd, 3, png_size=32).svg


def test_the_image_prompt_names_the_traits_the_registry_generator_draws() -> None:
    prompt = "Head-and-shoulders portrait of a male insectoid Mantid space pirate, retro illustration"
    assert infer_traits(prompt) == Traits("male", "insectoid Mantid", "space pirate")


async def test_it_is_selectable_through_the_llm_image_registry() -> None:
    register_image_provider("procedural", lambda _settings: ProceduralPortraits(png_size=64))
    generator = build_image_generator(provider="procedural")
    image = await generator.generate(ImageRequest(prompt="a female Grey smuggler", seed=9))
    assert image.provider == "procedural"
    assert image.mime_type == "image/png"
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert decoded.size == (64, 64)
