// The conversation tree (`GET /api/conversations/{id}/tree`): each message's alternatives for the `‹ 2/3 ›`
// navigator, and the Branches panel's list of every message.
//
// The panel indents at forks, not at every message: a path of forty messages with no alternative reads as one
// column, and each alternative of a message opens a nested list under it (so a path's depth is its number,
// `#n`, and its indentation says how many choices lead to it).

import { h } from "./ui.js";

export class Tree {
  constructor(data) {
    this.conversationId = data.conversation_id;
    this.activeLeafId = data.active_leaf_id;
    this.nodes = data.nodes ?? [];
    this.byId = new Map();
    this.children = new Map(); // parent id ("" for first messages) → its children, in creation order
    for (const node of this.nodes) {
      this.byId.set(node.message_id, node);
      const key = node.parent_id ?? "";
      if (!this.children.has(key)) this.children.set(key, []);
      this.children.get(key).push(node);
    }
  }

  /** The message's alternatives (itself among them), in creation order; [] for a message not in the tree. */
  alternatives(messageId) {
    const node = this.byId.get(messageId);
    if (!node) return [];
    return this.children.get(node.parent_id ?? "") ?? [];
  }

  /** The alternative `step` places away (-1 the previous, +1 the next), or null past either end. */
  alternative(messageId, step) {
    const siblings = this.alternatives(messageId);
    const index = siblings.findIndex((node) => node.message_id === messageId);
    if (index < 0) return null;
    return siblings[index + step] ?? null;
  }
}

/**
 * The whole tree as nested lists of buttons, the active path marked (`data-active`, and `aria-current` on the
 * active leaf). `who(role)` names a message's author; `onPick(messageId)` is called when one is chosen.
 */
export function branchList(tree, { who, onPick, disabled = false }) {
  const item = (node, position) => {
    const leaf = node.message_id === tree.activeLeafId;
    return h(
      "li",
      { class: "branch-item" },
      h(
        "button",
        {
          type: "button",
          class: "branch-node",
          dataset: { messageId: node.message_id, role: node.role, active: String(Boolean(node.active)) },
          "aria-current": leaf ? "true" : null,
          disabled,
          onclick: () => onPick(node.message_id),
        },
        h("span", { class: "branch-pos", "aria-hidden": "true" }, `#${position}`),
        h("span", { class: "branch-who" }, who(node.role)),
        h("span", { class: "branch-preview" }, node.preview || "(empty)"),
        leaf
          ? h("span", { class: "tag" }, "shown")
          : node.active
            ? h("span", { class: "visually-hidden" }, "(on the shown path)")
            : null,
      ),
    );
  };

  // A run of messages with one child each stays in one list; a message with alternatives after it forks.
  const run = (first, position) => {
    const items = [];
    let node = first;
    let at = position;
    for (;;) {
      items.push(item(node, at));
      const next = tree.children.get(node.message_id) ?? [];
      if (next.length === 1) {
        node = next[0];
        at += 1;
        continue;
      }
      if (next.length > 1) items.push(fork(next, at + 1));
      return items;
    }
  };

  const fork = (alternatives, position) =>
    h(
      "li",
      { class: "branch-fork" },
      ...alternatives.map((node, i) =>
        h(
          "ol",
          { class: "branch-list", "aria-label": `Alternative ${i + 1} of ${alternatives.length}` },
          ...run(node, position),
        ),
      ),
    );

  const roots = tree.children.get("") ?? [];
  if (roots.length === 1) return h("ol", { class: "branch-list branch-root" }, ...run(roots[0], 1));
  return h("ol", { class: "branch-list branch-root" }, roots.length ? fork(roots, 1) : null);
}
