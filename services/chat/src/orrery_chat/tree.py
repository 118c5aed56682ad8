"""The conversation tree in PostgreSQL: walking a path, making a branch active, reading pages of the active
path and the whole tree, deleting a subtree. Each function runs inside a caller's session (a transaction).

A message's `active_child_id` names the child most recently on the active path, so selecting a message makes
the path through it active down to its most recently active descendant: follow those pointers. Making a
message active sets the pointers of its ancestors to lead to it. Paths are walked with recursive queries over
the `parent_id` index: a page of the active path, and a prompt's context, read only as many messages as they
need, whatever the size of the tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from orrery_chat.domain import Memory, PathContext, StoredMessage
from orrery_chat.ports import PathMessage, TreeNode

# The most messages a prompt's context is read over (above it, a path with no summary yet, an imported chat say,
# is taken from its newest messages): far more than a window holds, so folding always has what it needs.
CONTEXT_LIMIT = 600

_COLUMNS = "message_id, seq, role, content, status, created_at, parent_id, turn_id"

# From a message up its path, including the nearest ancestor carrying a summary and nothing above it.
_CONTEXT = sa.text(
    f"""
WITH RECURSIVE up AS (
    SELECT {_COLUMNS}, summary, 0 AS depth FROM messages WHERE message_id = :start
    UNION ALL
    SELECT p.message_id, p.seq, p.role, p.content, p.status, p.created_at, p.parent_id, p.turn_id, p.summary,
           up.depth + 1
    FROM messages p JOIN up ON p.message_id = up.parent_id
    WHERE (up.depth = 0 OR up.summary IS NULL) AND up.depth < :limit
)
SELECT * FROM up ORDER BY depth DESC
"""
)

# Point every ancestor of a message at the child that leads to it.
_POINT_ANCESTORS = sa.text(
    """
WITH RECURSIVE up AS (
    SELECT message_id, parent_id FROM messages WHERE message_id = :node
    UNION ALL
    SELECT p.message_id, p.parent_id FROM messages p JOIN up ON p.message_id = up.parent_id
)
UPDATE messages m SET active_child_id = up.message_id
FROM up
WHERE m.message_id = up.parent_id AND m.active_child_id IS DISTINCT FROM up.message_id
"""
)

# From a message down its most recently active descendants, to the deepest.
_LEAF_BELOW = sa.text(
    """
WITH RECURSIVE down AS (
    SELECT message_id, active_child_id, 0 AS depth FROM messages WHERE message_id = :node
    UNION ALL
    SELECT c.message_id, c.active_child_id, down.depth + 1
    FROM messages c JOIN down ON c.message_id = down.active_child_id
)
SELECT message_id FROM down ORDER BY depth DESC LIMIT 1
"""
)

# Up to `limit` messages of a path, newest first, from `start`; each with its place among its siblings.
_PAGE = sa.text(
    f"""
WITH RECURSIVE up AS (
    SELECT message_id, parent_id, 1 AS n FROM messages
    WHERE message_id = :start AND conversation_id = :conversation_id
    UNION ALL
    SELECT p.message_id, p.parent_id, up.n + 1 FROM messages p JOIN up ON p.message_id = up.parent_id
    WHERE up.n < :limit
)
SELECT {", ".join("m." + c for c in _COLUMNS.split(", "))}, up.n,
       CASE WHEN m.parent_id IS NULL
            THEN (SELECT count(*) FROM messages s WHERE s.conversation_id = m.conversation_id AND s.parent_id IS NULL)
            ELSE (SELECT count(*) FROM messages s WHERE s.parent_id = m.parent_id) END AS sibling_count,
       CASE WHEN m.parent_id IS NULL
            THEN (SELECT count(*) FROM messages s
                  WHERE s.conversation_id = m.conversation_id AND s.parent_id IS NULL AND s.seq <= m.seq)
            ELSE (SELECT count(*) FROM messages s WHERE s.parent_id = m.parent_id AND s.seq <= m.seq) END
           AS sibling_index
FROM up JOIN messages m ON m.message_id = up.message_id
ORDER BY up.n
"""
)

_PATH_IDS = sa.text(
    """
WITH RECURSIVE up AS (
    SELECT message_id, parent_id FROM messages WHERE message_id = :start
    UNION ALL
    SELECT p.message_id, p.parent_id FROM messages p JOIN up ON p.message_id = up.parent_id
)
SELECT message_id FROM up
"""
)

# The turns of the messages on `old`'s path that are not on `new`'s, looking back at most `limit` messages.
_LEFT_TURNS = sa.text(
    """
WITH RECURSIVE old AS (
    SELECT message_id, parent_id, turn_id, 1 AS n FROM messages WHERE message_id = :old
    UNION ALL
    SELECT p.message_id, p.parent_id, p.turn_id, old.n + 1 FROM messages p JOIN old ON p.message_id = old.parent_id
    WHERE old.n < :limit
), new AS (
    SELECT message_id, parent_id, 1 AS n FROM messages WHERE message_id = :new
    UNION ALL
    SELECT p.message_id, p.parent_id, new.n + 1 FROM messages p JOIN new ON p.message_id = new.parent_id
    WHERE new.n < :limit * 2
)
SELECT DISTINCT turn_id FROM old
WHERE turn_id IS NOT NULL AND message_id NOT IN (SELECT message_id FROM new)
"""
)

_SUBTREE = """
WITH RECURSIVE sub AS (
    SELECT message_id FROM messages WHERE message_id = :node
    UNION ALL
    SELECT c.message_id FROM messages c JOIN sub ON c.parent_id = sub.message_id
)
"""

_SUBTREE_BUSY = sa.text(
    _SUBTREE
    + """
SELECT 1 FROM turns
WHERE conversation_id = :conversation_id AND status = 'processing'
  AND (reply_parent_id IN (SELECT message_id FROM sub) OR target_message_id IN (SELECT message_id FROM sub))
LIMIT 1
"""
)

_DELETE_SUBTREE = sa.text(
    _SUBTREE + "DELETE FROM messages WHERE message_id IN (SELECT message_id FROM sub) RETURNING message_id"
)


def stored(row: Any) -> StoredMessage:
    return StoredMessage(
        row.message_id,
        row.seq,
        row.role,
        row.content,
        row.status,
        row.created_at,
        getattr(row, "parent_id", None),
        getattr(row, "turn_id", None),
    )


async def context_at(session: AsyncSession, message_id: UUID) -> PathContext:
    """The summary nearest above `message_id` on its path, and the messages after it down to `message_id`."""
    rows = (await session.execute(_CONTEXT, {"start": message_id, "limit": CONTEXT_LIMIT})).all()
    memory = Memory()
    if rows and rows[0].depth > 0 and rows[0].summary is not None:
        memory = Memory(rows[0].summary, rows[0].message_id)
        rows = rows[1:]
    return PathContext(memory, [stored(r) for r in rows])


async def make_active(session: AsyncSession, conversation_id: UUID, node: UUID, *, descend: bool = True) -> UUID:
    """Make the path through `node` the active one, down to its most recently active descendant (or ending at
    `node` itself when not `descend`); returns the new active leaf."""
    await session.execute(_POINT_ANCESTORS, {"node": node})
    leaf = node
    if descend:
        leaf = (await session.execute(_LEAF_BELOW, {"node": node})).scalar_one()
    await session.execute(
        sa.text("UPDATE conversations SET active_leaf_id = :leaf WHERE conversation_id = :conversation_id"),
        {"leaf": leaf, "conversation_id": conversation_id},
    )
    return leaf


async def page(session: AsyncSession, conversation_id: UUID, start: UUID, limit: int) -> list[PathMessage]:
    """Up to `limit` messages of the path ending at `start`, newest first."""
    params = {"start": start, "conversation_id": conversation_id, "limit": limit}
    rows = (await session.execute(_PAGE, params)).all()
    return [PathMessage(stored(r), int(r.sibling_index), int(r.sibling_count)) for r in rows]


async def path_ids(session: AsyncSession, leaf: UUID) -> set[UUID]:
    return set((await session.execute(_PATH_IDS, {"start": leaf})).scalars())


async def whole_tree(session: AsyncSession, conversation_id: UUID, leaf: UUID | None) -> list[TreeNode]:
    """Every message of the conversation in creation order, compactly."""
    active = await path_ids(session, leaf) if leaf is not None else set()
    rows = await session.execute(
        sa.text(
            "SELECT message_id, parent_id, role, left(content, 80) AS preview FROM messages"
            " WHERE conversation_id = :conversation_id ORDER BY seq"
        ),
        {"conversation_id": conversation_id},
    )
    return [TreeNode(r.message_id, r.parent_id, r.role, r.preview, r.message_id in active) for r in rows]


async def left_turns(
    session: AsyncSession, old_leaf: UUID | None, new_node: UUID, limit: int = 100
) -> tuple[UUID, ...]:
    """The turns whose messages were on the active path ending at `old_leaf` and are not on `new_node`'s."""
    if old_leaf is None:
        return ()
    rows = await session.execute(_LEFT_TURNS, {"old": old_leaf, "new": new_node, "limit": limit})
    return tuple(rows.scalars())


async def subtree_busy(session: AsyncSession, conversation_id: UUID, node: UUID) -> bool:
    found = await session.execute(_SUBTREE_BUSY, {"node": node, "conversation_id": conversation_id})
    return found.first() is not None


async def delete_subtree(session: AsyncSession, node: UUID) -> Sequence[UUID]:
    return list((await session.execute(_DELETE_SUBTREE, {"node": node})).scalars())
