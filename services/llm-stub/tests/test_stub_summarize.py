"""The stub's extractive summaries keep what the user said, earlier summaries first, within a word cap."""

from orrery_llm_stub.summarize import MAX_WORDS, summarize, wants_summary


def test_a_summary_request_is_recognised_by_its_instruction() -> None:
    assert wants_summary("Summarize the conversation for long-term memory.")
    assert not wants_summary("You are Zed, a smuggler from Vega.")


def test_the_users_statements_are_kept_and_the_earlier_summary_comes_first() -> None:
    text = (
        "Summary so far:\nThe user said: My name is Ada.\n\nNew messages:\n"
        "User: I keep bees on Mars. They hum.\nZed: How delightful.\nUser: My ship is the Kestrel!"
    )
    assert summarize(text) == (
        "The user said: My name is Ada. The user said: I keep bees on Mars. The user said: My ship is the Kestrel!"
    )


def test_a_long_history_is_capped_without_losing_the_oldest_facts() -> None:
    lines = "\n".join(f"User: Fact number {i} is remembered." for i in range(500))
    summary = summarize(f"Summary so far:\n(none)\n\nNew messages:\n{lines}")
    assert len(summary.split()) <= MAX_WORDS
    assert summary.startswith("The user said: Fact number 0 is remembered.")
