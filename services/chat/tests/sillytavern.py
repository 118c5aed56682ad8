"""A chat file as SillyTavern writes it, for the tests of chat files."""

from __future__ import annotations

import json

# As SillyTavern saves a chat: a header with its metadata, the greeting, swipes on a reply, a hidden system note,
# send dates in its human-readable form, extras it keeps per message.
SILLYTAVERN_CHAT = "\n".join(
    json.dumps(line)
    for line in [
        {
            "user_name": "Ada",
            "character_name": "Captain Marrow",
            "create_date": "2024-06-05@15h04m11s",
            "chat_metadata": {"integrity": "5f1c", "note_prompt": "", "lastInContextMessageId": 3},
        },
        {
            "name": "Captain Marrow",
            "is_user": False,
            "is_system": False,
            "send_date": "June 5, 2024 3:04pm",
            "mes": "Welcome aboard the Kettle, stranger.",
            "extra": {},
        },
        {
            "name": "Ada",
            "is_user": True,
            "is_system": False,
            "send_date": "June 5, 2024 3:05pm",
            "mes": "Where are we headed?",
            "extra": {"isSmallSys": False},
            "force_avatar": "User Avatars/ada.png",
        },
        {
            "name": "Captain Marrow",
            "is_user": False,
            "send_date": "2024-06-05T15:05:40.123Z",
            "mes": "To the Veil, if the engines hold.",
            "swipes": ["Nowhere good.", "To the Veil, if the engines hold."],
            "swipe_id": 1,
            "swipe_info": [{"send_date": "June 5, 2024 3:05pm", "extra": {}}, {"extra": {}}],
            "gen_started": "2024-06-05T15:05:38.000Z",
            "gen_finished": "2024-06-05T15:05:40.000Z",
            "extra": {"api": "openai", "model": "gpt-4o", "token_count": 12},
        },
        {"name": "System", "is_user": False, "is_system": True, "send_date": 1717600000000, "mes": "[hidden note]"},
    ]
)
