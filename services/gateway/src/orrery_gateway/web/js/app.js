// The Orrery web client: sign-in, the roulette, chat with streamed replies, past conversations and the
// story dossier, over the gateway's WebSocket (/ws) and REST API (/api). Plain ES modules, no build step.

import { ApiError, createApi } from "./api.js";
import { Tree, branchList } from "./branches.js";
import { DossierPanel } from "./dossier.js";
import { Session, SignedOut } from "./session.js";
import { Channel } from "./socket.js";
import { ReplyAssembler } from "./turns.js";
import { $, ago, countdown, fullTime, h, plainError, randomId, show, turnFailureWords, waitWords } from "./ui.js";

const UPGRADE_KEY = "orrery.upgrading"; // a guest asked for a sign-in link: its chats move to the account
const CURRENT_KEY = "orrery.current"; // (per tab) the conversation to reopen after a reload
const LOCAL_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);
const DEV_MAILBOX = "http://127.0.0.1:8025/";
const SPIN_PATIENCE_MS = 120_000;
const OPEN_WAIT_MS = 10_000;
const WIDE = window.matchMedia("(min-width: 1180px)");
const SCREENS = ["signin", "mail", "roulette", "loading", "chat"];
// Shown when a portrait cannot be loaded: a silhouette under the same neon sky.
const PORTRAIT_FALLBACK =
  "data:image/svg+xml," +
  encodeURIComponent(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" fill="#151036"/>' +
      '<circle cx="32" cy="26" r="11" fill="#3d3180"/><path d="M12 64c2-14 10-20 20-20s18 6 20 20z" fill="#3d3180"/></svg>',
  );

const session = new Session();
const api = createApi(session);
const root = $("app");

const state = {
  current: null, // {id, projectId, character, stored, ready: Promise}
  conversations: [],
  spin: null, // {requestId, done, timer, early}
  turns: new Map(), // turn_id → {assembler, bubble, text, mode, messageId, prefix, conversationId}
  tree: null, // the open conversation's Tree (its messages' alternatives), dropped whenever the tree changes
  pathVersion: 0, // bumped by every change to the transcript: a reload begun before one is not applied
  pathQueue: Promise.resolve(), // switching, deleting: one at a time, each on the transcript the last one left
  editing: null, // {bubble, close}: the message being edited in place
  activeTurn: null,
  outstanding: [], // frames awaiting their direct answer, in the order sent
  openWaiters: [],
  dossierOpen: WIDE.matches,
  upgrade: false,
  cooldownStop: null,
};

// --- the link ------------------------------------------------------------------------------------------

const channel = new Channel({
  session,
  onFrame,
  onOpen: linkOpened,
  onDrop: linkDropped,
  onState: linkState,
  onSignedOut: (code) => leaveApp(code),
});

function whenOpen(ms = OPEN_WAIT_MS) {
  if (channel.open) return Promise.resolve(true);
  return new Promise((resolve) => {
    const waiter = { resolve, timer: setTimeout(() => done(false), ms) };
    const done = (ok) => {
      clearTimeout(waiter.timer);
      state.openWaiters = state.openWaiters.filter((w) => w !== waiter);
      resolve(ok);
    };
    waiter.resolve = done;
    state.openWaiters.push(waiter);
  });
}

/** Send a frame and wait for its direct answer (one of `expect`) or its `error` frame. */
async function request(frame, ...expect) {
  if (!channel.open && !(await whenOpen())) {
    throw new ApiError(0, "offline", "The link to the station is down; it reconnects by itself.");
  }
  return new Promise((resolve, reject) => {
    const entry = { expect: new Set(expect), resolve, reject };
    state.outstanding.push(entry);
    if (!channel.send(frame)) {
      state.outstanding = state.outstanding.filter((e) => e !== entry);
      reject(new ApiError(0, "offline", "The link to the station is down; it reconnects by itself."));
    }
  });
}

function onFrame(frame) {
  switch (frame.type) {
    case "pong":
      return;
    case "delta":
    case "turn.done":
    case "turn.restart":
    case "turn.failed":
      turnFrame(frame);
      return;
    case "turn.delayed":
      turnDelayed(frame);
      return;
    case "character.ready":
    case "character.failed":
      spinOutcome(frame);
      return;
    case "dossier.updated":
      dossier.updated(frame);
      return;
    default:
      break;
  }
  const head = state.outstanding[0];
  if (frame.type === "error") {
    const error = new ApiError(0, frame.code, frame.message, frame, frame.retry_after ?? null);
    if (head) {
      state.outstanding.shift();
      head.reject(error);
    } else {
      banner(plainError(error.code, error.message, error.retryAfter));
    }
    return;
  }
  if (head && head.expect.has(frame.type)) {
    state.outstanding.shift();
    head.resolve(frame);
  }
}

function linkOpened() {
  for (const waiter of [...state.openWaiters]) waiter.resolve(true);
  banner("");
  // Replies that were streaming when the link dropped continue exactly after the last piece received.
  for (const [turnId, turn] of state.turns) {
    if (!turn.assembler.finished) {
      channel.send({ type: "resume", turn_id: turnId, after_seq: turn.assembler.lastSeq });
    }
  }
  // A conversation with no message yet lived only in the old socket's session: start it again.
  const current = state.current;
  if (current && !current.stored && current.character) {
    current.ready = request(
      { type: "start_conversation", character_id: current.character.id, project_id: current.projectId },
      "conversation.started",
    ).then(
      (started) => {
        current.id = started.conversation_id;
        return current;
      },
      () => current,
    );
  }
  if (state.spin && state.spin.requestId && !state.spin.done) checkSpinOutcome();
  if (state.wasDropped) refreshConversations();
  state.wasDropped = false;
}

function linkDropped() {
  state.wasDropped = true;
  const waiting = state.outstanding;
  state.outstanding = [];
  for (const entry of waiting) {
    entry.reject(new ApiError(0, "disconnected", "The connection dropped before the station answered."));
  }
  if (state.activeTurn) banner("The link dropped mid-reply. Reconnecting — the reply picks up where it stopped.");
}

const LINK_WORDS = {
  idle: "Standing by",
  connecting: "Linking…",
  open: "Linked",
  reconnecting: "Reconnecting…",
  offline: "Offline — waiting for the network",
};

function linkState(linkStateName) {
  const el = $("link-status");
  el.dataset.state = linkStateName;
  el.querySelector(".label").textContent = LINK_WORDS[linkStateName] ?? linkStateName;
}

function banner(text) {
  const el = $("chat-banner");
  el.textContent = text;
  show(el, Boolean(text));
}

// --- screens -------------------------------------------------------------------------------------------

function showScreen(name, { focus = true } = {}) {
  root.dataset.screen = name;
  if (name !== "chat") document.title = "Orrery";
  for (const screen of SCREENS) show($(`screen-${screen}`), screen === name);
  syncDossier();
  if (!focus) return;
  if (name === "chat") $("composer-input").focus({ preventScroll: true });
  else $(`screen-${name}`).querySelector("[tabindex='-1']")?.focus({ preventScroll: true });
}

function setDrawer(which, open) {
  if (which === "sidebar") {
    root.classList.toggle("sidebar-open", open);
    $("open-sidebar").setAttribute("aria-expanded", String(open));
    if (open) $("new-spin").focus();
  }
  $("scrim").hidden = !root.classList.contains("sidebar-open") && !(state.dossierOpen && !WIDE.matches && inChat());
}

const inChat = () => root.dataset.screen === "chat";

function syncDossier() {
  const visible = inChat() && state.dossierOpen;
  $("dossier").hidden = !visible;
  root.classList.toggle("dossier-open", visible);
  $("toggle-dossier").setAttribute("aria-expanded", String(visible));
  if (visible) show($("dossier-badge"), false);
  setDrawer("scrim", false);
}

function toggleDossier(open = !state.dossierOpen) {
  state.dossierOpen = open;
  syncDossier();
  if (open) $("close-dossier").focus();
  else if (inChat()) $("toggle-dossier").focus();
}

// --- sign-in -------------------------------------------------------------------------------------------

const SIGNED_OUT_WORDS = {
  refresh_token_reused: "Your session was ended for safety: it was used from two places at once. Sign in again.",
  refresh_token_revoked: "Your session was ended. Sign in again.",
  refresh_token_expired: "Your session expired. Sign in again.",
  refresh_token_invalid: "Your session is no longer valid. Sign in again.",
  user_not_found: "This guest session now belongs to an account. Sign in with its email to continue.",
  signed_out: "You were signed out (perhaps in another tab).",
  erased: "Your account and everything in it were erased.",
};

function showSignin({ upgrade = false, notice = "" } = {}) {
  state.upgrade = upgrade;
  $("signin-title").textContent = upgrade ? "Keep your conversations" : "ORRERY";
  $("signin-title").classList.toggle("title-xl", !upgrade);
  $("signin-title").classList.toggle("title-l", upgrade);
  show($("guest-block"), !upgrade);
  show($("guest"), !upgrade);
  $("guest-note").textContent = upgrade
    ? "Your conversations as a guest come with you to the account. "
    : "Guests can sign in with email later and keep their conversations.";
  if (upgrade) {
    $("guest-note").append(
      h("button", { type: "button", class: "link-button", onclick: () => showScreen(state.current ? "chat" : "roulette") }, "Not now"),
    );
  }
  $("signin-notice").textContent = notice;
  show($("signin-notice"), Boolean(notice));
  $("signin-error").textContent = "";
  showScreen("signin");
}

function fieldError(name, text) {
  $(`signin-${name}-error`).textContent = text;
  $(`signin-${name}`).setAttribute("aria-invalid", text ? "true" : "false");
}

async function requestLink(event) {
  event.preventDefault();
  const username = $("signin-username").value.trim().replace(/\s+/g, " ");
  const email = $("signin-email").value.trim();
  fieldError("username", username ? "" : "Choose a username (up to 40 characters).");
  fieldError("email", /^[^\s@]+@[^\s@]+$/.test(email) ? "" : "Enter the address the sign-in link goes to.");
  $("signin-error").textContent = "";
  if (!username) return $("signin-username").focus();
  if (!/^[^\s@]+@[^\s@]+$/.test(email)) return $("signin-email").focus();
  const submit = $("signin-submit");
  submit.disabled = true;
  submit.textContent = "Sending…";
  try {
    // A guest asks with its own token: the link then folds this guest (and no other) into the account.
    const asGuest = Boolean(session.user?.is_guest);
    await api("/api/auth/magic-link", { method: "POST", body: { email, username }, auth: asGuest });
    if (session.user?.is_guest) {
      localStorage.setItem(UPGRADE_KEY, JSON.stringify({ guest: session.user.id, at: Date.now() }));
    }
    $("mail-address").textContent = email;
    show($("dev-mailbox"), LOCAL_HOSTS.has(location.hostname));
    showScreen("mail");
  } catch (error) {
    const fields = error?.body?.error?.fields ?? [];
    for (const f of fields) {
      const name = Array.isArray(f.loc) ? f.loc[f.loc.length - 1] : "";
      if (name === "email" || name === "username") fieldError(name, f.msg || "Check this field.");
    }
    if (!fields.length) {
      $("signin-error").textContent =
        error.code === "rate_limited"
          ? `Too many sign-in links were asked for. You can ask again in ${waitWords(error.retryAfter || 60)}.`
          : error.code === "mail_unavailable"
            ? "Mail cannot be sent right now. Try again in a moment, or continue as a guest."
            : plainError(error.code, error.message, error.retryAfter);
    }
  } finally {
    submit.disabled = false;
    submit.textContent = "Send me a sign-in link";
  }
}

async function continueAsGuest() {
  const button = $("guest");
  button.disabled = true;
  $("signin-error").textContent = "";
  const username = $("signin-username").value.trim().replace(/\s+/g, " ");
  try {
    const tokens = await api("/api/auth/guest", {
      method: "POST",
      body: username ? { username } : {},
      auth: false,
    });
    session.save(tokens);
    enterApp();
  } catch (error) {
    $("signin-error").textContent = plainError(error.code, error.message, error.retryAfter);
  } finally {
    button.disabled = false;
  }
}

function renderWho() {
  const user = session.user;
  $("who").textContent = user ? (user.is_guest ? `Guest · ${user.username}` : user.username) : "";
  $("who").title = user?.email ?? "";
  show($("upgrade"), Boolean(user?.is_guest));
}

function enterApp() {
  root.dataset.signedIn = "true";
  renderWho();
  channel.start();
  showScreen("roulette");
  refreshConversations().then(afterUpgrade);
  const reopen = sessionStorage.getItem(CURRENT_KEY);
  if (reopen) openConversation(reopen, { quiet: true });
}

/** Back from a magic link a guest asked for: its conversations are moved over in the background. */
async function afterUpgrade() {
  let pending;
  try {
    pending = JSON.parse(localStorage.getItem(UPGRADE_KEY) || "null");
  } catch {
    pending = null;
  }
  const user = session.user;
  if (!pending || !user || user.is_guest) return;
  localStorage.removeItem(UPGRADE_KEY);
  if (Date.now() - pending.at > 3_600_000 || state.conversations.length) return;
  const note = $("conversations-note");
  note.textContent = "Bringing over your conversations as a guest…";
  for (let i = 0; i < 15 && !state.conversations.length; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await refreshConversations();
  }
  if (note.textContent.startsWith("Bringing")) note.textContent = "";
}

function leaveApp(code) {
  channel.stop();
  for (const entry of state.outstanding) entry.reject(new SignedOut(code));
  Object.assign(state, { current: null, conversations: [], spin: null, activeTurn: null, outstanding: [], tree: null });
  state.turns.clear();
  closeEditor();
  if ($("branches").open) $("branches").close();
  sessionStorage.removeItem(CURRENT_KEY);
  root.dataset.signedIn = "false";
  root.classList.remove("sidebar-open");
  $("conversation-list").replaceChildren();
  $("transcript").replaceChildren();
  dossier.setProject(null);
  showSignin({ notice: SIGNED_OUT_WORDS[code] ?? "" });
}

// --- the roulette --------------------------------------------------------------------------------------

function setStage(stage) {
  $("screen-loading").dataset.failed = "false";
  const order = ["sent", "generating", "ready"];
  const reached = order.indexOf(stage);
  for (const li of $("spin-steps").children) {
    const index = order.indexOf(li.dataset.step);
    li.dataset.state = index < reached ? "done" : index === reached ? "active" : "waiting";
  }
  const titles = { sent: "Tuning in…", generating: "Someone is taking shape…", ready: "Contact!" };
  $("loading-title").textContent = titles[stage];
  if (stage === "ready") setProgress(100);
  if (stage === "sent") setProgress(8);
}

function setProgress(value) {
  const bar = $("spin-progress");
  bar.setAttribute("aria-valuenow", String(Math.round(value)));
  bar.style.setProperty("--progress", `${value}%`);
}

async function spin() {
  const previous = state.spin;
  if (previous) clearInterval(previous.timer);
  const spinState = { requestId: null, done: false, timer: null, early: new Map(), startedAt: Date.now() };
  state.spin = spinState;
  closeDrawers();
  show($("spin-failure"), false);
  $("spin-status").textContent = "";
  $("spin-error").textContent = "";
  setStage("sent");
  showScreen("loading");
  try {
    const generating = await request({ type: "spin" }, "character.generating");
    if (state.spin !== spinState) return;
    spinState.requestId = generating.request_id;
    setStage("generating");
    $("spin-status").textContent = "The roulette is inventing a character for you.";
    // The persona and the portrait take a while: creep towards 90 % so the wait visibly moves.
    spinState.timer = setInterval(() => {
      const elapsed = (Date.now() - spinState.startedAt) / 1000;
      setProgress(20 + 70 * (1 - Math.exp(-elapsed / 10)));
      if (Date.now() - spinState.startedAt > SPIN_PATIENCE_MS) {
        spinFailed("The roulette did not answer in time. Try another spin.");
      }
    }, 400);
    const early = spinState.early.get(spinState.requestId);
    if (early) spinOutcome(early);
  } catch (error) {
    if (state.spin !== spinState) return;
    spinFailed(plainError(error.code, error.message, error.retryAfter), error.retryAfter);
  }
}

function spinOutcome(frame) {
  const spinState = state.spin;
  if (!spinState || spinState.done) return;
  if (!spinState.requestId) {
    spinState.early.set(frame.request_id, frame); // arrived before its `character.generating`
    return;
  }
  if (frame.request_id !== spinState.requestId) return; // another tab's spin
  if (frame.type === "character.failed") {
    spinFailed(
      `The roulette jammed. ${turnFailureWords(frame.reason)}` +
        (frame.retryable ? " Another spin may well work." : ""),
    );
    return;
  }
  spinState.done = true;
  clearInterval(spinState.timer);
  setStage("ready");
  $("spin-status").textContent = `${frame.character.name} is on the line.`;
  startWith(frame.character).catch((error) => {
    spinFailed(plainError(error.code, error.message, error.retryAfter), error.retryAfter);
  });
}

/** After a reconnect: the `character.ready` may have been pushed while the link was down. */
async function checkSpinOutcome() {
  const spinState = state.spin;
  try {
    const page = await api("/api/characters?presets=false&limit=5");
    const found = (page?.items ?? []).find((c) => c.request_id === spinState.requestId);
    if (found && state.spin === spinState && !spinState.done) {
      spinOutcome({ type: "character.ready", request_id: spinState.requestId, character: found });
    }
  } catch {
    /* the notification may still come */
  }
}

function spinFailed(reason, retryAfter = null) {
  const spinState = state.spin;
  if (spinState) {
    spinState.done = true;
    clearInterval(spinState.timer);
  }
  $("loading-title").textContent = "No contact";
  $("screen-loading").dataset.failed = "true";
  const active = $("spin-steps").querySelector("[data-state=active]");
  if (active) active.dataset.state = "failed";
  $("spin-status").textContent = "";
  $("spin-failure-reason").textContent = reason;
  show($("spin-failure"), true);
  const retry = $("spin-retry");
  state.cooldownStop?.();
  if (retryAfter) {
    retry.disabled = true;
    state.cooldownStop = countdown(
      retryAfter,
      (left) => {
        retry.textContent = `Spin again in ${waitWords(left)}`;
      },
      () => {
        retry.disabled = false;
        retry.textContent = "Try another spin";
      },
    );
  } else {
    retry.disabled = false;
    retry.textContent = "Try another spin";
  }
  retry.focus();
}

// --- the conversation ----------------------------------------------------------------------------------

function portraitSrc(url) {
  if (!url) return "";
  const token = session.peekToken();
  return token ? `${url}${url.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token)}` : url;
}

function fallback(event) {
  const img = event.currentTarget;
  if (img.src !== PORTRAIT_FALLBACK) img.src = PORTRAIT_FALLBACK;
}

function renderCharacter(character) {
  const c = character ?? {};
  $("character-name").textContent = c.name || "Someone";
  $("character-planet").textContent = c.planet ? `of ${c.planet}` : "";
  const traits = [c.sex, c.species, c.archetype].filter(Boolean);
  $("character-traits").replaceChildren(...traits.map((t) => h("li", { class: "chip" }, t)));
  const img = $("portrait");
  img.alt = c.name ? `Portrait of ${c.name}` : "";
  img.removeAttribute("src");
  img.src = c.portrait_url ? portraitSrc(c.portrait_url) : PORTRAIT_FALLBACK;
  $("character-personality").textContent = c.personality || "";
  $("character-backstory").textContent = c.backstory || "";
  show($("character-more"), Boolean(c.personality || c.backstory));
  document.title = c.name ? `${c.name} — Orrery` : "Orrery";
  $("composer-label").textContent = c.name ? `Message ${c.name}` : "Message";
  $("composer-input").placeholder = c.name ? `Say something to ${c.name}…` : "Say something…";
}

async function startWith(character) {
  const started = await request({ type: "start_conversation", character_id: character.id }, "conversation.started");
  openStarted(started, { fresh: true });
}

function openStarted(started, { fresh }) {
  const current = {
    id: started.conversation_id,
    projectId: started.project_id,
    character: started.character,
    stored: !fresh,
  };
  current.ready = Promise.resolve(current);
  state.current = current;
  state.tree = null;
  state.pathVersion += 1;
  closeEditor();
  if ($("branches").open) $("branches").close();
  if (fresh) sessionStorage.removeItem(CURRENT_KEY);
  else sessionStorage.setItem(CURRENT_KEY, current.id);
  renderCharacter(current.character);
  $("screen-chat").dataset.conversationId = current.id;
  $("screen-chat").dataset.projectId = current.projectId ?? "";
  $("end-session").disabled = !current.stored;
  $("open-branches").disabled = !current.stored;
  banner("");
  if (fresh) {
    $("transcript").replaceChildren();
    addBubble("assistant", started.greeting || "…", { status: "complete", greeting: true });
  }
  dossier.setProject(current.projectId);
  markCurrent();
  // A reply still streaming in the conversation left behind finishes there (and is stored); this one is free.
  setStreaming(null);
  showScreen("chat");
}

async function openConversation(id, { quiet = false } = {}) {
  closeDrawers();
  if (state.current?.id === id && inChat()) return;
  if (!quiet) showScreen("chat");
  $("transcript").replaceChildren(h("li", { class: "msg-loading" }, "Opening the conversation…"));
  try {
    const [started, messages] = await Promise.all([
      request({ type: "start_conversation", conversation_id: id }, "conversation.started"),
      allMessages(id),
    ]);
    openStarted(started, { fresh: false });
    $("transcript").replaceChildren();
    renderPath(messages);
    // A reply of this conversation still streaming (it was left while it streamed) continues in view: a
    // continued message in its own place, any other reply at the end.
    for (const [turnId, turn] of state.turns) {
      if (turn.conversationId === id && !turn.assembler.finished) {
        const continued = turn.mode === "continue" ? bubbleOf(turn.messageId) : null;
        if (continued) continued.replaceWith(turn.bubble);
        else $("transcript").append(turn.bubble);
        setStreaming(turnId);
      }
    }
    scrollTranscript(true);
  } catch (error) {
    sessionStorage.removeItem(CURRENT_KEY);
    if (quiet) {
      showScreen("roulette", { focus: false });
      return;
    }
    showScreen("roulette");
    $("spin-error").textContent = plainError(error.code, error.message, error.retryAfter);
    refreshConversations();
  }
}

// The active path, oldest first (the API pages it from the newest message up).
async function allMessages(id) {
  const all = [];
  let before = null;
  do {
    const cursor = before ? `&before=${before}` : "";
    const page = await api(`/api/conversations/${id}/messages?limit=200${cursor}`);
    all.push(...page.messages);
    before = page.next_before;
  } while (before);
  return all.reverse();
}

const roleOf = (message) => (message.role === "user" ? "user" : "assistant");
const whoOf = (role) => (role === "user" ? "You" : state.current?.character?.name || "Them");

function bubble(role, text, { status = "complete", time = null, messageId = null, greeting = false } = {}) {
  const li = h(
    "li",
    {
      class: `msg msg-${role}`,
      dataset: { role, status, ...(messageId ? { messageId } : {}), ...(greeting ? { greeting: "true" } : {}) },
    },
    h("p", { class: "msg-who" }, whoOf(role)),
    h("div", { class: "msg-text" }, text),
    h("p", { class: "msg-meta" }, time ? h("time", { datetime: time, title: fullTime(time) }, ago(time)) : null),
  );
  if (status === "cancelled") li.querySelector(".msg-meta").append(h("span", { class: "tag" }, "stopped"));
  return li;
}

function addBubble(role, text, options = {}) {
  const li = bubble(role, text, options);
  $("transcript").append(li);
  scrollTranscript(true);
  return li;
}

// --- the conversation tree: alternatives, edits, deletions -------------------------------------------------

/** The transcript's message bubbles, in order (notes and the loading line left out). */
const bubbles = () => [...$("transcript").querySelectorAll(":scope > li.msg")];
const bubbleOf = (messageId) => (messageId ? (bubbles().find((b) => b.dataset.messageId === messageId) ?? null) : null);

/** Whether a reply of the open conversation is still being written. */
function busyHere() {
  const id = state.current?.id;
  for (const turn of state.turns.values()) {
    if (turn.conversationId === id && !turn.assembler.finished) return true;
  }
  return false;
}

/** Run `work` after the switches and deletions asked for before it (each sees the transcript the last left). */
function onPath(work) {
  const run = state.pathQueue.then(work).catch((error) => {
    if (!(error instanceof SignedOut)) note(plainError(error.code, error.message, error.retryAfter));
  });
  state.pathQueue = run;
  return run;
}

/** The open conversation's tree, read once and kept until it changes. */
async function currentTree() {
  const current = state.current;
  if (!current?.stored) return null;
  if (state.tree?.conversationId === current.id) return state.tree;
  const tree = new Tree(await api(`/api/conversations/${current.id}/tree`));
  if (state.current === current) state.tree = tree;
  return tree;
}

/**
 * The active path from the newest message already shown that is still on it (the anchor), oldest first: pages
 * are read from the newest message up until one of `known` appears (everything above it is unchanged: a path
 * through a message is the same down to it), or to the first message (the anchor is then null).
 */
async function pathSince(id, known) {
  const messages = [];
  let anchor = null;
  let before = null;
  let limit = 30;
  do {
    const cursor = before ? `&before=${before}` : "";
    const page = await api(`/api/conversations/${id}/messages?limit=${limit}${cursor}`);
    for (const m of page.messages) {
      messages.push(m);
      if (known.has(m.message_id)) {
        anchor = m.message_id;
        break;
      }
    }
    before = anchor ? null : page.next_before;
    limit = 200;
  } while (before);
  return { messages: messages.reverse(), anchor };
}

/**
 * Bring the transcript in line with the conversation's active path after it changed (a reply, a switch of
 * alternative, an edit, a deletion). What is shown and still on the path stays; the rest is drawn again.
 */
async function reloadPath({ keepTree = false } = {}) {
  const current = state.current;
  if (!current?.stored) return false;
  if (!keepTree) state.tree = null;
  const version = ++state.pathVersion;
  const known = new Set();
  for (const b of bubbles()) {
    if (!b.dataset.messageId || b.dataset.status === "streaming") break;
    known.add(b.dataset.messageId);
  }
  let found;
  try {
    found = await pathSince(current.id, known);
  } catch {
    return false; // the transcript stays as it is (the conversation may be gone: the sidebar says so)
  }
  if (version !== state.pathVersion || state.current !== current || busyHere()) return false;
  renderPath(found.messages, found.anchor);
  return true;
}

/** Show `messages` (oldest first; from the shown message `anchor` on, or the whole path when it is null). */
function renderPath(messages, anchor = null) {
  const transcript = $("transcript");
  const focus = rememberFocus();
  closeEditor();
  clearNotes();
  transcript.querySelector(":scope > .msg-loading")?.remove();
  const shown = bubbles();
  const at = Math.max(0, anchor ? shown.findIndex((b) => b.dataset.messageId === anchor) : 0);
  const last = messages.length - 1;
  let i = 0;
  for (; i < messages.length; i += 1) {
    const b = shown[at + i];
    if (!b || !sameMessage(b, messages[i])) break;
    decorate(b, messages[i], i === last);
  }
  for (const b of shown.slice(at + i)) b.remove();
  for (; i < messages.length; i += 1) {
    const m = messages[i];
    transcript.append(decorate(bubble(roleOf(m), m.content), m, i === last));
  }
  syncTools();
  restoreFocus(focus);
  scrollTranscript();
}

/** Whether a shown bubble is this stored message: the same id, or (sent or received before its id was known)
 * the same author and text. */
function sameMessage(b, m) {
  if (b.dataset.messageId) return b.dataset.messageId === m.message_id;
  return (
    b.dataset.role === roleOf(m) &&
    b.dataset.status !== "failed" &&
    b.querySelector(".msg-text").textContent === m.content
  );
}

/** Make a bubble show a stored message: its text, time, place among its alternatives and what can be done. */
function decorate(li, m, last) {
  const role = roleOf(m);
  li.dataset.messageId = m.message_id;
  li.dataset.parentId = m.parent_id ?? "";
  li.dataset.status = m.status;
  li.dataset.siblingIndex = String(m.sibling_index ?? 1);
  li.dataset.siblingCount = String(m.sibling_count ?? 1);
  if (role === "assistant" && !m.parent_id) li.dataset.greeting = "true";
  else delete li.dataset.greeting;
  li.removeAttribute("aria-busy");
  const text = li.querySelector(".msg-text");
  if (text.textContent !== m.content) text.textContent = m.content;
  for (const stale of li.querySelectorAll(":scope > .msg-error, :scope > .button, :scope > .msg-tools")) stale.remove();
  const meta = li.querySelector(".msg-meta");
  meta.replaceChildren(h("time", { datetime: m.created_at, title: fullTime(m.created_at) }, ago(m.created_at)));
  if (m.status === "cancelled") meta.append(h("span", { class: "tag" }, "stopped"));
  li.append(messageTools(li, m, last));
  return li;
}

function tool(name, glyph, label, onclick, { end = false } = {}) {
  return h(
    "button",
    {
      type: "button",
      class: "tool",
      dataset: { tool: name, end: String(end) },
      "aria-label": label,
      title: label,
      onclick,
    },
    h("span", { "aria-hidden": "true" }, glyph),
  );
}

/** The navigator `‹ 2/3 ›` (a message with alternatives) and the message's actions. */
function messageTools(li, m, last) {
  const role = roleOf(m);
  const id = m.message_id;
  const box = h("div", { class: "msg-tools" });
  const index = m.sibling_index ?? 1;
  const count = m.sibling_count ?? 1;
  if (count > 1) {
    box.append(
      h(
        "span",
        { class: "msg-nav", role: "group", "aria-label": "Alternatives" },
        tool("previous", "‹", "previous alternative", () => switchAlternative(id, -1), { end: index <= 1 }),
        h("span", { class: "msg-count", "aria-hidden": "true" }, `${index}/${count}`),
        h("span", { class: "visually-hidden" }, `alternative ${index} of ${count}`),
        tool("next", "›", "next alternative", () => switchAlternative(id, 1), { end: index >= count }),
      ),
    );
  }
  const actions = h("span", { class: "msg-actions" });
  if (role === "assistant" && m.parent_id) {
    actions.append(tool("regenerate", "↻", "Regenerate", () => startTurn("regenerate", id)));
  }
  if (role === "assistant" && last) actions.append(tool("continue", "»", "Continue", () => startTurn("continue", id)));
  actions.append(
    tool("edit", "✎", "Edit", () => openEditor(li)),
    tool("delete", "✕", "Delete", () => deleteMessage(id)),
  );
  box.append(actions);
  return box;
}

/** Nothing is switched, edited or deleted while a reply is being written. */
function syncTools() {
  const busy = Boolean(state.activeTurn);
  for (const b of $("transcript").querySelectorAll(".tool")) b.disabled = busy || b.dataset.end === "true";
}

/** Where the focus was in the transcript (which bubble, which of its tools), to put it back after a redraw. */
function rememberFocus() {
  const el = document.activeElement;
  const li = el && $("transcript").contains(el) ? el.closest("li.msg") : null;
  return li ? { index: bubbles().indexOf(li), tool: el.dataset.tool ?? "" } : null;
}

function restoreFocus(memo) {
  if (!memo || $("transcript").contains(document.activeElement)) return;
  const all = bubbles();
  const li = all[memo.index] ?? all.at(-1);
  const pick =
    li?.querySelector(`.tool[data-tool="${memo.tool}"]:not(:disabled)`) ?? li?.querySelector(".tool:not(:disabled)");
  if (pick) pick.focus({ preventScroll: true });
  else $("composer-input").focus({ preventScroll: true });
}

/** A line at the end of the transcript: something asked for did not happen (with a way to try again). */
function note(text, retry = null) {
  clearNotes();
  const li = h(
    "li",
    { class: "msg-note", role: "alert" },
    h("span", {}, text),
    retry
      ? h(
          "button",
          {
            type: "button",
            class: "button small",
            onclick: () => {
              clearNotes();
              retry();
            },
          },
          "Try again",
        )
      : null,
  );
  $("transcript").append(li);
  scrollTranscript(true);
}

function clearNotes() {
  for (const el of $("transcript").querySelectorAll(":scope > .msg-note")) el.remove();
}

/** Show another alternative of a message (`step` -1: the previous, +1: the next). */
function switchAlternative(messageId, step) {
  return onPath(async () => {
    if (state.activeTurn) return;
    const target = (await currentTree())?.alternative(messageId, step);
    if (target) await selectMessage(target.message_id);
  });
}

/** Make the path through a message the active one (the socket's `select`, else `PUT …/active`) and show it. */
async function selectMessage(messageId) {
  const current = state.current;
  if (!current?.stored) return;
  try {
    if (channel.open) await request({ type: "select", message_id: messageId }, "branch.selected");
    else await api(`/api/conversations/${current.id}/active`, { method: "PUT", body: { message_id: messageId } });
  } catch (error) {
    if (error instanceof SignedOut) return;
    note(`That could not be shown. ${plainError(error.code, error.message, error.retryAfter)}`);
    return;
  }
  if (state.current === current) await reloadPath({ keepTree: true });
}

function deleteMessage(messageId) {
  return onPath(async () => {
    const current = state.current;
    const li = bubbleOf(messageId);
    if (!current?.stored || !li || state.activeTurn) return;
    const alternatives = Number(li.dataset.siblingCount) > 1;
    const choice = await modal({
      title: "Delete this message?",
      body: [
        h("p", {}, "This message and everything after it on this branch will be gone for good."),
        alternatives ? h("p", { class: "fine-print" }, "Its other alternatives stay.") : null,
      ].filter(Boolean),
      actions: [
        { label: "Keep it", value: "keep" },
        { label: "Delete", value: "delete", danger: true },
      ],
    });
    if (choice !== "delete" || state.current !== current) return;
    try {
      await api(`/api/conversations/${current.id}/messages/${messageId}`, { method: "DELETE" });
    } catch (error) {
      if (error instanceof SignedOut) return;
      if (error.code !== "not_found") {
        const why = error.status === 409 ? turnFailureWords(error.message) : plainError(error.code, error.message);
        li.querySelector(":scope > .msg-error")?.remove();
        li.querySelector(".msg-tools").before(h("p", { class: "msg-error", role: "alert" }, `Not deleted. ${why}`));
        return;
      }
    }
    if (state.current === current) await reloadPath();
  });
}

/** Edit a message in place: a text box with Save and Cancel (Ctrl+Enter saves, Escape cancels). */
function openEditor(li) {
  if (state.activeTurn || !li?.dataset.messageId) return;
  closeEditor();
  const messageId = li.dataset.messageId;
  const text = li.querySelector(".msg-text");
  const tools = li.querySelector(".msg-tools");
  const original = text.textContent;
  const input = h("textarea", {
    class: "msg-edit-input",
    "aria-label": "Edited text",
    "aria-describedby": "edit-hint",
    maxlength: 4000,
    rows: Math.min(12, Math.max(3, original.split("\n").length + 1)),
  });
  input.value = original;
  const error = h("p", { class: "field-error", role: "alert" });
  const editor = h(
    "div",
    { class: "msg-editor" },
    input,
    error,
    h("p", { class: "visually-hidden", id: "edit-hint" }, "Ctrl+Enter saves, Escape cancels."),
    h(
      "div",
      { class: "row end" },
      h("button", { type: "button", class: "button small ghost", onclick: () => cancel() }, "Cancel"),
      h("button", { type: "button", class: "button small primary", onclick: () => save() }, "Save"),
    ),
  );
  const close = () => {
    editor.remove();
    text.hidden = false;
    if (tools) tools.hidden = false;
    delete li.dataset.editing;
    if (state.editing?.bubble === li) state.editing = null;
  };
  const cancel = () => {
    close();
    li.querySelector('.tool[data-tool="edit"]')?.focus();
  };
  const save = () => {
    const content = input.value;
    if (!content.trim()) {
      error.textContent = "A message cannot be empty. Delete it instead.";
      input.focus();
      return;
    }
    close();
    if (content === original) return;
    startTurn("edit", messageId, content);
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      cancel();
    } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.isComposing) {
      event.preventDefault();
      save();
    }
  });
  text.hidden = true;
  if (tools) tools.hidden = true;
  text.after(editor);
  li.dataset.editing = "true";
  state.editing = { bubble: li, close };
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

function closeEditor() {
  state.editing?.close();
  state.editing = null;
}

const TURN_WORDS = {
  regenerate: "The new reply",
  continue: "The continuation",
  edit: "The edit",
};

/**
 * Regenerate, continue or edit a shown message: the reply streams like a message's. A regenerated reply and an
 * edited message take the place of the old one and of everything after it (a new alternative, which the active
 * path now goes through); a continuation is written onto the message itself.
 */
async function startTurn(mode, messageId, content = null) {
  const current = state.current;
  if (!current?.stored || state.activeTurn) return;
  const target = bubbleOf(messageId);
  if (mode === "continue" && !target) return;
  const role = target?.dataset.role ?? (mode === "regenerate" ? "assistant" : null);
  const parentId = target?.dataset.parentId;
  const hadFocus = $("transcript").contains(document.activeElement);
  closeEditor();
  clearNotes();
  state.pathVersion += 1;
  state.tree = null;
  let reply;
  let userBubble = null;
  let prefix = "";
  if (mode === "continue") {
    reply = target;
    prefix = target.querySelector(".msg-text").textContent;
    target.querySelector(".msg-tools")?.remove();
    reply.dataset.status = "waiting";
  } else {
    if (target) {
      let next = target;
      while (next) {
        const after = next.nextElementSibling;
        next.remove();
        next = after;
      }
    }
    if (mode === "edit" && role === "user") userBubble = addBubble("user", content, { status: "sending" });
    if (mode === "edit" && role === "assistant") {
      prefix = content; // stored as it is: no reply is generated
      reply = addBubble("assistant", content, { status: "waiting" });
    } else {
      reply = addBubble("assistant", "", { status: "waiting" });
      reply.querySelector(".msg-text").append(h("span", { class: "typing", "aria-label": "Writing" }, "● ● ●"));
    }
  }
  if (hadFocus && !$("transcript").contains(document.activeElement)) $("composer-input").focus({ preventScroll: true });
  setStreaming("pending");
  try {
    const frame = { type: mode, message_id: messageId, client_msg_id: randomId() };
    if (mode === "edit") frame.content = content;
    const accepted = await request(frame, "turn.accepted");
    if (userBubble) {
      userBubble.dataset.status = "sent";
      const sentAt = new Date().toISOString();
      userBubble
        .querySelector(".msg-meta")
        .replaceChildren(h("time", { datetime: sentAt, title: fullTime(sentAt) }, "just now"));
    }
    reply.dataset.turnId = accepted.turn_id;
    reply.dataset.status = "streaming";
    reply.setAttribute("aria-busy", "true");
    state.turns.set(accepted.turn_id, {
      assembler: new ReplyAssembler(accepted.turn_id),
      bubble: reply,
      text: content ?? "",
      mode,
      messageId,
      parentId,
      role,
      prefix,
      conversationId: current.id,
    });
    if (state.current === current) setStreaming(accepted.turn_id);
  } catch (error) {
    if (reply !== target) reply.remove();
    userBubble?.remove();
    if (state.current !== current) return;
    setStreaming(null);
    await reloadPath(); // what the conversation holds, as before
    note(`${TURN_WORDS[mode]} did not start. ${plainError(error.code, error.message, error.retryAfter)}`);
    if (error.code === "rate_limited" && error.retryAfter) cooldown(error.retryAfter);
  }
}

/** Chat's words for a regenerate, continue or edit it could not do. */
function reworkFailureWords(reason) {
  if (reason === "message_not_found") return "That message no longer exists.";
  return turnFailureWords((reason || "").replace(/^not_allowed:\s*/, "") || null);
}

/** A regenerate, continue or edit failed: show what is stored, say why, and offer it again. */
async function reworkFailed(turn, outcome) {
  if (state.current?.id !== turn.conversationId) return;
  await reloadPath();
  note(
    `${TURN_WORDS[turn.mode]} failed. ${reworkFailureWords(outcome.reason)}`,
    outcome.retryable
      ? () => {
          // An edited message whose reply failed is stored: edit what now stands in its place.
          let id = turn.messageId;
          if (turn.mode === "edit" && !bubbleOf(id)) {
            const standing = bubbles().find(
              (b) => b.dataset.parentId === (turn.parentId ?? "") && b.dataset.role === turn.role,
            );
            if (standing) id = standing.dataset.messageId;
          }
          startTurn(turn.mode, id, turn.mode === "edit" ? turn.text : null);
        }
      : null,
  );
}

// --- the branches panel ---------------------------------------------------------------------------------

async function openBranches() {
  const current = state.current;
  if (!current?.stored) return;
  const dialog = $("branches");
  const body = $("branches-body");
  $("branches-error").textContent = "";
  body.replaceChildren(h("p", { class: "msg-loading" }, "Reading the tree…"));
  if (!dialog.open) dialog.showModal();
  let tree;
  try {
    tree = new Tree(await api(`/api/conversations/${current.id}/tree`));
  } catch (error) {
    if (error instanceof SignedOut) return;
    body.replaceChildren();
    const why = plainError(error.code, error.message, error.retryAfter);
    $("branches-error").textContent = `The tree could not be read. ${why}`;
    return;
  }
  if (state.current !== current || !dialog.open) return;
  state.tree = tree;
  const busy = Boolean(state.activeTurn);
  body.replaceChildren(
    ...(busy ? [h("p", { class: "fine-print" }, "A reply is being written: pick a message once it is done.")] : []),
    branchList(tree, {
      who: whoOf,
      disabled: busy,
      onPick: (messageId) => {
        dialog.close();
        onPath(() => selectMessage(messageId));
      },
    }),
  );
  const shown = body.querySelector(".branch-node[aria-current='true']") ?? body.querySelector(".branch-node");
  shown?.focus({ preventScroll: true });
  shown?.scrollIntoView({ block: "center" });
}

// --- keys, as in SillyTavern: ← → the last reply's alternatives (→ past the last regenerates), ↑ edits ---

function transcriptKeys(event) {
  if (!["ArrowLeft", "ArrowRight", "ArrowUp"].includes(event.key)) return;
  if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey || event.isComposing) return;
  if (!inChat() || $("modal").open || $("branches").open || state.activeTurn || state.editing) return;
  const input = $("composer-input");
  const target = event.target;
  const transcript = $("transcript");
  const fromComposer = target === input && input.value === "";
  const fromTranscript =
    target instanceof Element &&
    transcript.contains(target) &&
    !target.closest("textarea, input, select, [contenteditable]");
  if (!fromComposer && !fromTranscript) return;
  if (event.key === "ArrowUp") {
    if (target === transcript) return; // the log itself scrolls with ↑
    const mine = bubbles().filter((b) => b.dataset.role === "user" && b.dataset.messageId).at(-1);
    if (!mine) return;
    event.preventDefault();
    openEditor(mine);
    return;
  }
  const last = bubbles().at(-1);
  if (!last?.dataset.messageId || last.dataset.role !== "assistant") return;
  event.preventDefault();
  const step = event.key === "ArrowLeft" ? -1 : 1;
  onPath(async () => {
    const reply = bubbles().at(-1);
    if (state.activeTurn || !reply?.dataset.messageId || reply.dataset.role !== "assistant") return;
    const tree = await currentTree();
    if (!tree) return;
    const other = tree.alternative(reply.dataset.messageId, step);
    if (other) await selectMessage(other.message_id);
    else if (step > 0 && reply.dataset.parentId && tree.byId.has(reply.dataset.messageId)) {
      await startTurn("regenerate", reply.dataset.messageId);
    }
  });
}

function nearBottom() {
  const t = $("transcript");
  return t.scrollHeight - t.scrollTop - t.clientHeight < 120;
}

function scrollTranscript(force = false) {
  const t = $("transcript");
  if (force || nearBottom()) t.scrollTop = t.scrollHeight;
}

function setStreaming(turnId) {
  state.activeTurn = turnId;
  show($("send"), !turnId);
  show($("stop"), Boolean(turnId));
  $("stop").disabled = false;
  $("stop").textContent = "Stop";
  $("transcript").setAttribute("aria-busy", turnId ? "true" : "false");
  syncTools();
}

async function sendMessage(text) {
  const current = state.current;
  if (!current || state.activeTurn || !text.trim()) return;
  closeEditor();
  clearNotes();
  state.pathVersion += 1; // a reload begun before this message would drop it from view
  const userBubble = addBubble("user", text, { status: "sending" });
  const reply = addBubble("assistant", "", { status: "waiting" });
  reply.querySelector(".msg-text").append(h("span", { class: "typing", "aria-label": "Writing" }, "● ● ●"));
  setStreaming("pending");
  try {
    await current.ready;
    const accepted = await request(
      { type: "message", conversation_id: current.id, content: text, client_msg_id: randomId() },
      "turn.accepted",
    );
    current.stored = true;
    if (state.current === current) {
      $("end-session").disabled = false;
      $("open-branches").disabled = false;
    }
    userBubble.dataset.status = "sent";
    const sentAt = new Date().toISOString();
    userBubble.querySelector(".msg-meta").replaceChildren(h("time", { datetime: sentAt, title: fullTime(sentAt) }, "just now"));
    reply.dataset.turnId = accepted.turn_id;
    reply.dataset.status = "streaming";
    reply.setAttribute("aria-busy", "true");
    state.turns.set(accepted.turn_id, {
      assembler: new ReplyAssembler(accepted.turn_id),
      bubble: reply,
      text,
      mode: "reply",
      prefix: "",
      conversationId: current.id,
    });
    if (state.current === current) setStreaming(accepted.turn_id);
  } catch (error) {
    reply.remove();
    setStreaming(null);
    notSent(userBubble, text, error);
  }
}

function notSent(bubble, text, error) {
  bubble.dataset.status = "failed";
  const note = h("p", { class: "msg-error", role: "alert" }, `Not sent. ${plainError(error.code, error.message, error.retryAfter)}`);
  bubble.append(note);
  const input = $("composer-input");
  if (!input.value) {
    input.value = text; // nothing typed is lost
    autoGrow();
  }
  if (error.code === "rate_limited" && error.retryAfter) cooldown(error.retryAfter);
}

function cooldown(seconds) {
  const send = $("send");
  state.cooldownStop?.();
  send.disabled = true;
  state.cooldownStop = countdown(
    seconds,
    (left) => {
      send.textContent = `Wait ${left} s`;
    },
    () => {
      send.disabled = false;
      send.textContent = "Send";
    },
  );
}

// The reply's stream fell silent for a while (a replica restarting, a dependency down): say so; the next frame
// of the turn replaces the note.
function turnDelayed(frame) {
  const turn = state.turns.get(frame.turn_id);
  if (!turn || turn.assembler.finished) return;
  turn.bubble.querySelector(".msg-meta").replaceChildren(h("span", { class: "tag" }, "delayed — still working"));
}

function turnFrame(frame) {
  const turn = state.turns.get(frame.turn_id);
  if (!turn) return;
  const restartsBefore = turn.assembler.restarts;
  if (!turn.assembler.apply(frame)) return;
  const bubble = turn.bubble;
  const textEl = bubble.querySelector(".msg-text");
  // A continuation is written onto the message's text; an edited message of the character's is its text.
  textEl.textContent = turn.prefix + turn.assembler.text;
  if (turn.assembler.restarts > restartsBefore) {
    bubble.querySelector(".msg-meta").replaceChildren(h("span", { class: "tag" }, "writing again"));
  } else if (bubble.querySelector(".msg-meta .tag")?.textContent.startsWith("delayed")) {
    bubble.querySelector(".msg-meta").replaceChildren();
  }
  scrollTranscript();
  if (!turn.assembler.finished) return;
  const outcome = turn.assembler.outcome;
  state.turns.delete(frame.turn_id);
  bubble.removeAttribute("aria-busy");
  bubble.dataset.status = outcome.status;
  if (outcome.messageId) bubble.dataset.messageId = outcome.messageId;
  const meta = bubble.querySelector(".msg-meta");
  const doneAt = new Date().toISOString();
  meta.replaceChildren(h("time", { datetime: doneAt, title: fullTime(doneAt) }, "just now"));
  if (outcome.status === "cancelled") meta.append(h("span", { class: "tag" }, "stopped"));
  const rework = turn.mode !== "reply"; // a failed regenerate, continue or edit is told of under the transcript
  if (outcome.status === "failed" && !rework) {
    if (!turn.assembler.text) textEl.textContent = "";
    bubble.append(
      h("p", { class: "msg-error", role: "alert" }, turnFailureWords(outcome.reason)),
      outcome.retryable
        ? h(
            "button",
            { type: "button", class: "button small", onclick: (e) => { e.currentTarget.remove(); sendMessage(turn.text); } },
            "Send again",
          )
        : null,
    );
  }
  if (state.activeTurn === frame.turn_id) {
    setStreaming(null);
    banner("");
  }
  refreshConversations();
  // The tree grew: show the stored path (ids, alternatives, what can be done with each message).
  state.tree = null;
  if (outcome.status === "failed" && rework) reworkFailed(turn, outcome);
  else if (outcome.status !== "failed" && state.current?.id === turn.conversationId) reloadPath();
}

function stopReply() {
  const turnId = state.activeTurn;
  if (!turnId || turnId === "pending") return;
  if (channel.send({ type: "cancel", turn_id: turnId })) {
    $("stop").disabled = true;
    $("stop").textContent = "Stopping…";
  } else {
    banner("The link is down; the reply can be stopped once it is back.");
  }
}

async function endSession() {
  const current = state.current;
  if (!current?.stored) return;
  const button = $("end-session");
  button.disabled = true;
  button.textContent = "Ending…";
  try {
    const ended = await api(`/api/conversations/${current.id}/end`, { method: "POST" });
    refreshConversations();
    const choice = await modal({
      title: "Session ended",
      body: [
        h("p", { class: "fine-print" }, `Your conversation with ${current.character?.name ?? "them"}, summed up:`),
        h("p", { class: "summary", id: "summary-text" }, ended.summary || "Nothing much happened."),
        h("p", { class: "fine-print" }, "Writing again reopens it."),
      ],
      actions: [
        { label: "Close", value: "close" },
        { label: "✦ Spin again", value: "spin", primary: true },
      ],
    });
    if (choice === "spin") spin();
  } catch (error) {
    banner(`The session could not be ended. ${plainError(error.code, error.message, error.retryAfter)}`);
  } finally {
    button.disabled = !state.current?.stored;
    button.textContent = "End session";
  }
}

async function deleteConversation(conversation) {
  const title = conversation.title || "Untitled";
  const choice = await modal({
    title: "Delete this conversation?",
    body: [
      h("p", {}, `“${title}” with ${conversation.character?.name ?? "this character"} and all its messages will be gone for good.`),
    ],
    actions: [
      { label: "Keep it", value: "keep" },
      { label: "Delete", value: "delete", danger: true },
    ],
  });
  if (choice !== "delete") return;
  try {
    await api(`/api/conversations/${conversation.conversation_id}`, { method: "DELETE" });
  } catch (error) {
    if (error.code !== "not_found") {
      $("conversations-note").textContent = `Not deleted. ${plainError(error.code, error.message, error.retryAfter)}`;
      return;
    }
  }
  if (state.current?.id === conversation.conversation_id) {
    state.current = null;
    sessionStorage.removeItem(CURRENT_KEY);
    dossier.setProject(null);
    showScreen("roulette");
  }
  state.conversations = state.conversations.filter((c) => c.conversation_id !== conversation.conversation_id);
  renderConversations();
  $("conversations-note").textContent = `Deleted “${title}”.`;
}

// --- the sidebar ---------------------------------------------------------------------------------------

async function refreshConversations() {
  if (!session.signedIn) return;
  try {
    const page = await api("/api/conversations?limit=100");
    state.conversations = page.conversations;
    renderConversations();
  } catch (error) {
    if (error instanceof SignedOut) return;
    $("conversations-note").textContent = `The list could not be loaded. ${plainError(error.code, error.message)}`;
  }
}

function renderConversations() {
  const list = $("conversation-list");
  const note = $("conversations-note");
  if (!state.conversations.length) {
    list.replaceChildren();
    if (!note.textContent || note.textContent.startsWith("The list")) {
      note.textContent = "No conversations yet. Spin the roulette and say hello.";
    }
    return;
  }
  if (note.textContent.startsWith("No conversations") || note.textContent.startsWith("The list") || note.textContent.startsWith("Bringing")) {
    note.textContent = "";
  }
  list.replaceChildren(
    ...state.conversations.map((c) => {
      const title = c.title || "Untitled";
      const name = c.character?.name ?? "Unknown";
      const img = h("img", { class: "conv-portrait", alt: "", width: 40, height: 40, loading: "lazy", onerror: fallback });
      if (c.character?.portrait_url) img.src = portraitSrc(c.character.portrait_url);
      return h(
        "li",
        { class: "conv", dataset: { conversationId: c.conversation_id, status: c.status } },
        h(
          "button",
          { type: "button", class: "conv-open", onclick: () => openConversation(c.conversation_id) },
          img,
          h(
            "span",
            { class: "conv-text" },
            h("span", { class: "conv-title" }, title),
            h(
              "span",
              { class: "conv-sub" },
              h("span", { class: "conv-character" }, name),
              " · ",
              h("time", { datetime: c.last_message_at, title: fullTime(c.last_message_at) }, ago(c.last_message_at)),
              c.status === "ended" ? h("span", { class: "tag" }, "ended") : null,
            ),
          ),
        ),
        h(
          "button",
          {
            type: "button",
            class: "icon-button conv-delete",
            "aria-label": `Delete “${title}” with ${name}`,
            onclick: () => deleteConversation(c),
          },
          h("span", { "aria-hidden": "true" }, "✕"),
        ),
      );
    }),
  );
  markCurrent();
}

function markCurrent() {
  for (const li of $("conversation-list").children) {
    const open = li.querySelector(".conv-open");
    if (li.dataset.conversationId === state.current?.id) open.setAttribute("aria-current", "true");
    else open.removeAttribute("aria-current");
  }
}

function closeDrawers() {
  root.classList.remove("sidebar-open");
  $("open-sidebar").setAttribute("aria-expanded", "false");
  if (!WIDE.matches && state.dossierOpen) {
    state.dossierOpen = false;
    syncDossier();
  }
  $("scrim").hidden = true;
}

// --- your data ----------------------------------------------------------------------------------------

async function myData() {
  const choice = await modal({
    title: "Your data",
    body: [
      h("p", {}, "Download everything Orrery holds of you: your characters as cards, your chats as SillyTavern files, your dossiers and what your replies cost."),
      h("p", { class: "fine-print" }, "Or erase your account: every character, conversation and dossier, on every service."),
    ],
    actions: [
      { label: "Close", value: "close" },
      { label: "Erase my account…", value: "erase", danger: true },
      { label: "Download everything", value: "export", primary: true },
    ],
  });
  if (choice === "export") await downloadExport();
  if (choice === "erase") await eraseAccount();
}

async function downloadExport() {
  try {
    const response = await fetch("/api/me/export", {
      headers: { Authorization: `Bearer ${await session.accessToken()}` },
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      const retryAfter = Number(response.headers.get("Retry-After")) || null;
      throw new ApiError(response.status, body?.error?.code || `http_${response.status}`, body?.error?.message || "", body, retryAfter);
    }
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: `orrery-export-${new Date().toISOString().slice(0, 10)}.zip` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    banner(`The export could not be made. ${plainError(error.code, error.message, error.retryAfter)}`);
  }
}

async function eraseAccount() {
  const choice = await modal({
    title: "Erase your account?",
    body: [
      h("p", {}, "Your account, every character, conversation and dossier will be erased from every service. This cannot be undone."),
      h("p", { class: "fine-print" }, "Download your data first if you want to keep a copy."),
    ],
    actions: [
      { label: "Keep my account", value: "keep" },
      { label: "Erase everything", value: "erase", danger: true },
    ],
  });
  if (choice !== "erase") return;
  try {
    await api("/api/me", { method: "DELETE" });
  } catch (error) {
    banner(`Your account was not erased. ${plainError(error.code, error.message, error.retryAfter)}`);
    return;
  }
  session.clear("erased");
}

// --- dialogs -------------------------------------------------------------------------------------------

function modal({ title, body, actions }) {
  const dialog = $("modal");
  $("modal-title").textContent = title;
  $("modal-body").replaceChildren(...body);
  $("modal-actions").replaceChildren(
    ...actions.map((a) =>
      h("button", { class: `button${a.primary ? " primary" : ""}${a.danger ? " danger" : ""}`, value: a.value }, a.label),
    ),
  );
  dialog.returnValue = "";
  const opener = document.activeElement;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        opener?.focus?.();
        resolve(dialog.returnValue);
      },
      { once: true },
    );
  });
}

// --- the dossier ---------------------------------------------------------------------------------------

const dossier = new DossierPanel({
  api,
  body: $("dossier-body"),
  version: $("dossier-version"),
  notice: $("dossier-notice"),
  onChange: () => {
    if ($("dossier").hidden) show($("dossier-badge"), true);
  },
});

// --- wiring --------------------------------------------------------------------------------------------

function autoGrow() {
  const input = $("composer-input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 180)}px`;
}

function wire() {
  $("portrait").addEventListener("error", fallback);
  $("signin-form").addEventListener("submit", requestLink);
  $("guest").addEventListener("click", continueAsGuest);
  $("mail-back").addEventListener("click", () => showSignin({ upgrade: state.upgrade }));
  $("upgrade").addEventListener("click", () => showSignin({ upgrade: true }));
  $("sign-out").addEventListener("click", () => session.signOut());
  $("my-data").addEventListener("click", myData);
  $("spin").addEventListener("click", spin);
  $("spin-retry").addEventListener("click", spin);
  $("spin-cancel").addEventListener("click", () => {
    if (state.spin) clearInterval(state.spin.timer);
    state.spin = null;
    showScreen(state.current ? "chat" : "roulette");
  });
  $("spin-again").addEventListener("click", spin);
  $("new-spin").addEventListener("click", spin);
  $("end-session").addEventListener("click", endSession);
  $("toggle-dossier").addEventListener("click", () => toggleDossier());
  $("close-dossier").addEventListener("click", () => toggleDossier(false));
  $("open-sidebar").addEventListener("click", () => setDrawer("sidebar", !root.classList.contains("sidebar-open")));
  $("close-sidebar").addEventListener("click", () => {
    setDrawer("sidebar", false);
    $("open-sidebar").focus();
  });
  $("scrim").addEventListener("click", closeDrawers);
  document.addEventListener("keydown", transcriptKeys);
  $("open-branches").addEventListener("click", openBranches);
  $("close-branches").addEventListener("click", () => $("branches").close());
  $("branches").addEventListener("click", (event) => {
    if (event.target === event.currentTarget) event.currentTarget.close(); // a click on the backdrop
  });
  $("branches").addEventListener("close", () => {
    if (inChat() && !$("transcript").contains(document.activeElement)) $("open-branches").focus({ preventScroll: true });
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || $("modal").open || $("branches").open) return;
    if (root.classList.contains("sidebar-open")) {
      setDrawer("sidebar", false);
      $("open-sidebar").focus();
    } else if (!WIDE.matches && state.dossierOpen && inChat()) {
      toggleDossier(false);
    }
  });
  const input = $("composer-input");
  input.addEventListener("input", autoGrow);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.ctrlKey && !event.altKey && !event.metaKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    if (state.activeTurn || $("send").disabled) return;
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    autoGrow();
    sendMessage(text);
  });
  $("stop").addEventListener("click", stopReply);
  WIDE.addEventListener("change", () => {
    state.dossierOpen = WIDE.matches;
    closeDrawers();
    syncDossier();
  });
  session.addEventListener("signedout", (event) => leaveApp(event.detail.code));
  session.addEventListener("userchange", () => {
    // Another tab signed in as someone else: start over as them.
    if (root.dataset.signedIn === "true") location.reload();
  });
  // Relative times go stale: rewrite them now and then (in place, so nothing loses focus).
  setInterval(() => {
    for (const time of document.querySelectorAll("time[datetime]")) time.textContent = ago(time.dateTime);
  }, 60_000);
}

wire();
if (session.signedIn) enterApp();
else showSignin();
