"""Reading a persona from a system prompt and answering in character."""

from __future__ import annotations

from orrery_llm_stub.character import compose_reply, read_persona, seed_for, topic_of
from orrery_shared.llm.tokens import estimate_tokens


def test_the_name_traits_and_setting_come_from_the_system_prompt() -> None:
    persona = read_persona("You are Mira Vale, a curious and stubborn lighthouse keeper.\nSetting: the Salt Coast")
    assert persona.name == "Mira Vale"
    assert persona.traits[:2] == ("curious", "stubborn")
    assert persona.setting == "the Salt Coast"


def test_labelled_character_sheets_are_read() -> None:
    persona = read_persona("Name: Captain Oduya\nPersonality: grumpy, loyal, secretly kind")
    assert persona.name == "Captain Oduya"
    assert persona.traits == ("grumpy", "loyal", "secretly kind")


def test_a_prompt_without_a_character_falls_back_to_a_neutral_voice() -> None:
    persona = read_persona("You are a helpful assistant.")
    assert persona.name == "Orrery"
    assert persona.traits == ()


def test_the_topic_is_the_users_subject_seen_from_the_characters_side() -> None:
    assert topic_of("What do you think about the old lighthouse?") == "the old lighthouse"
    assert topic_of("I lost my favourite compass yesterday") == "your favourite compass"
    assert topic_of("hm") == "that"


def test_replies_are_in_character_and_deterministic() -> None:
    persona = read_persona("You are Mira Vale, a curious lighthouse keeper.")
    message = "What do you think about the old lighthouse?"
    seed = seed_for("prompt", message)
    reply = compose_reply(persona, message, seed=seed)
    assert reply.startswith("*Mira Vale ")
    assert "the old lighthouse" in reply
    assert reply == compose_reply(persona, message, seed=seed)
    assert reply != compose_reply(persona, "Do you ever get lonely out there?", seed=seed_for("prompt", "x"))


def test_a_reply_can_be_stretched_to_a_length() -> None:
    persona = read_persona("You are Mira Vale, a curious lighthouse keeper.")
    reply = compose_reply(persona, "Tell me about storms.", seed=1, min_tokens=400)
    assert estimate_tokens(reply) >= 400
    assert "storms" in reply[-200:]


def test_addressing_the_character_is_not_taken_for_the_topic() -> None:
    persona = read_persona("You are Captain Oduya, a grumpy ship captain.")
    assert "captain is" not in compose_reply(persona, "Hello captain!", seed=1).lower()
    assert "the ship" in compose_reply(persona, "Hello captain! How is the ship?", seed=1)
