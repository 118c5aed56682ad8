"""The token stream's entries, as the gateway reads what chat writes."""

from __future__ import annotations

from orrery_shared import token_stream as entries


def raw(**fields: str) -> dict[bytes, bytes]:
    return {key.encode(): value.encode() for key, value in fields.items()}


def test_each_kind_of_entry_is_read_with_its_fields() -> None:
    assert entries.parse(raw(seq="1", type="delta", text="Hel")) == entries.Delta(1, "Hel")
    assert entries.parse(raw(seq="2", type="restart")) == entries.Restart(2)
    done = raw(seq="3", type="done", **entries.done_fields("m-1", "cancelled"))
    assert entries.parse(done) == entries.Done(3, "m-1", "cancelled")
    error = raw(seq="4", type="error", **entries.error_fields("not_found", retryable=False))
    assert entries.parse(error) == entries.Error(4, "not_found", False)


def test_only_done_and_error_end_a_stream_and_an_unknown_kind_ends_it_too() -> None:
    assert entries.is_final(entries.parse(raw(seq="1", type="done", message_id="m")))
    assert not entries.is_final(entries.parse(raw(seq="1", type="delta", text="x")))
    assert not entries.is_final(entries.Restart(2))
    assert entries.is_final(entries.parse(raw(seq="9", type="from-a-newer-writer")))
