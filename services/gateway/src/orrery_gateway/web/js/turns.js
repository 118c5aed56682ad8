// One reply, assembled from its turn's frames in `seq` order, each entry applied exactly once.
//
// The token stream numbers its entries 1, 2, 3… without gaps. Frames are applied only in that order: an early
// one waits for the missing ones, a repeated one (a resumed stream overlapping what arrived before the drop)
// is ignored. `lastSeq` is therefore exactly what to send as `resume {after_seq}` after a reconnect.

export class ReplyAssembler {
  constructor(turnId) {
    this.turnId = turnId;
    this.lastSeq = 0;
    this.parts = [];
    this.waiting = new Map();
    this.outcome = null; // {status: "complete" | "cancelled" | "failed", messageId?, reason?, retryable?}
    this.restarts = 0;
  }

  get text() {
    return this.parts.join("");
  }

  get finished() {
    return this.outcome !== null;
  }

  /** Apply a frame of this turn; true when the text or the outcome changed. */
  apply(frame) {
    if (this.outcome) return false;
    if (typeof frame.seq !== "number") {
      // A failure announced as a notification carries no seq: it ends the turn whatever came before.
      if (frame.type === "turn.failed") {
        this.outcome = { status: "failed", reason: frame.reason, retryable: frame.retryable !== false };
        return true;
      }
      return false;
    }
    if (frame.seq <= this.lastSeq || this.waiting.has(frame.seq)) return false;
    this.waiting.set(frame.seq, frame);
    let changed = false;
    while (!this.outcome && this.waiting.has(this.lastSeq + 1)) {
      const next = this.waiting.get(this.lastSeq + 1);
      this.waiting.delete(this.lastSeq + 1);
      this.lastSeq += 1;
      changed = true;
      if (next.type === "delta") {
        this.parts.push(next.text);
      } else if (next.type === "turn.restart") {
        this.parts = []; // the reply is generated anew: what came so far is void
        this.restarts += 1;
      } else if (next.type === "turn.done") {
        this.outcome = { status: next.status || "complete", messageId: next.message_id };
      } else if (next.type === "turn.failed") {
        this.outcome = { status: "failed", reason: next.reason, retryable: next.retryable !== false };
      }
    }
    if (this.outcome) this.waiting.clear();
    return changed;
  }
}
