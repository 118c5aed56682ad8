// The WebSocket link to the gateway: authenticates with `Sec-WebSocket-Protocol: bearer, <token>`, reconnects
// with backoff when the link drops, and keeps it alive and fresh.
//
// - A drop (or the browser going offline) abandons the socket at once and reconnects: at once when the
//   browser is back online, else after an exponential backoff with jitter (0.5 s … 15 s); while the browser
//   says it is offline nothing is tried until it is back.
// - The gateway closes with 4401 when the token is refused or has expired: refresh it, then reconnect.
// - Pings every 25 s keep idle sockets open; a ping left unanswered for 10 s means a dead link.
// - The gateway checks the token it was opened with on every frame, so shortly before that token expires
//   the link is reopened with a fresh one.
// After every (re)connection `onOpen` runs before anything else is sent, so the app can resume replies.

import { SignedOut } from "./session.js";

const PING_EVERY_MS = 25_000;
const PONG_WITHIN_MS = 10_000;
const ROTATE_BEFORE_MS = 60_000;
const CLOSE_UNAUTHORIZED = 4401;
const MAX_BACKOFF_MS = 15_000;

export class Channel {
  constructor({ session, onFrame, onOpen, onDrop, onState, onSignedOut }) {
    this.session = session;
    this.onFrame = onFrame;
    this.onOpen = onOpen;
    this.onDrop = onDrop;
    this.onState = onState;
    this.onSignedOut = onSignedOut;
    this.ws = null;
    this.wanted = false;
    this.attempts = 0;
    this.authFailures = 0;
    this.timer = null;
    this.pinger = null;
    this.watchdog = null;
    this.tokenExpiresAt = 0;
    this.rotateBefore = ROTATE_BEFORE_MS;
    this.state = "idle";
    const protocol = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${protocol}//${location.host}/ws`;
    window.addEventListener("online", () => this.wake());
    window.addEventListener("offline", () => {
      if (this.ws) this.#abandon("offline");
    });
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  start() {
    this.wanted = true;
    if (!this.ws && !this.timer) this.#connect();
  }

  stop() {
    this.wanted = false;
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.#detach();
    if (ws) ws.close(1000, "bye");
    this.#setState("idle");
  }

  /** Reconnect now if waiting to (the browser came back online, the user asked). */
  wake() {
    if (!this.wanted || this.ws) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.#connect();
  }

  /** Send a frame; false when the link is down (the caller tells the user, nothing is queued). */
  send(frame) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  async #connect() {
    if (!this.wanted || this.ws) return;
    this.#setState(this.attempts === 0 && this.state === "idle" ? "connecting" : "reconnecting");
    let token;
    try {
      token = await this.session.accessToken();
    } catch (error) {
      if (error instanceof SignedOut) {
        this.wanted = false;
        this.onSignedOut?.(error.code);
        return;
      }
      this.#retry();
      return;
    }
    if (!this.wanted || this.ws) return;
    const ws = new WebSocket(this.url, ["bearer", token]);
    this.ws = ws;
    // The gateway checks this token on every frame: reopen with a fresh one shortly before it expires.
    this.tokenExpiresAt = this.session.expiresAt();
    this.rotateBefore = Math.min(ROTATE_BEFORE_MS, this.session.margin() / 2);
    ws.onopen = () => {
      this.attempts = 0;
      this.#setState("open");
      this.#startPinging();
      this.onOpen?.();
    };
    ws.onmessage = (event) => {
      clearTimeout(this.watchdog);
      this.watchdog = null;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame.type === "string") this.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.#detach();
      this.onDrop?.();
      if (!this.wanted) return;
      if (event.code === CLOSE_UNAUTHORIZED) {
        this.#reauthenticate();
        return;
      }
      this.authFailures = 0;
      this.#retry();
    };
  }

  #reauthenticate() {
    this.authFailures += 1;
    this.#setState("reconnecting");
    this.session.refresh({ force: true }).then(
      () => this.#retry(this.authFailures > 2 ? undefined : 0),
      (error) => {
        if (error instanceof SignedOut) {
          this.wanted = false;
          this.onSignedOut?.(error.code);
        } else {
          this.#retry();
        }
      },
    );
  }

  #retry(delay) {
    if (!this.wanted) return;
    const offline = navigator.onLine === false;
    // Offline, the browser's "online" event is the signal to try again (the long timer is a fallback).
    const wait = offline
      ? MAX_BACKOFF_MS
      : (delay ?? Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempts) * (0.5 + Math.random() / 2));
    this.attempts += 1;
    this.#setState(offline ? "offline" : "reconnecting");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.#connect();
    }, wait);
  }

  /** Give up on the current socket without waiting for a closing handshake a dead link never completes. */
  #abandon(why) {
    const ws = this.ws;
    if (!ws) return;
    this.#detach();
    try {
      ws.close(4000, why);
    } catch {
      /* already closing */
    }
    this.onDrop?.();
    if (this.wanted) this.#retry(why === "rotate" ? 0 : undefined);
  }

  #detach() {
    const ws = this.ws;
    this.ws = null;
    clearInterval(this.pinger);
    clearTimeout(this.watchdog);
    this.pinger = null;
    this.watchdog = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    }
  }

  #startPinging() {
    clearInterval(this.pinger);
    this.pinger = setInterval(() => {
      if (!this.open) return;
      if (this.tokenExpiresAt && this.tokenExpiresAt - Date.now() < this.rotateBefore) {
        this.#abandon("rotate");
        return;
      }
      this.send({ type: "ping" });
      if (!this.watchdog) this.watchdog = setTimeout(() => this.#abandon("silent"), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  #setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.onState?.(state);
  }
}
