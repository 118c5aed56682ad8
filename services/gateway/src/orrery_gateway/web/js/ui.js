// Small DOM and wording helpers. Text always goes in through textContent: nothing a character, a model or
// another user wrote is ever parsed as HTML.

export const $ = (id) => document.getElementById(id);

/** Create an element: h("button", {class: "x", onclick: fn, "aria-label": "…"}, "text", child, …). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function show(el, visible = true) {
  el.hidden = !visible;
}

/** "in 12 s", "in 3 min", "in about 2 h": how long until something may be tried again. */
export function waitWords(seconds) {
  const s = Math.max(1, Math.ceil(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.ceil(s / 60);
  if (m < 60) return `${m} min`;
  return `about ${Math.round(m / 60)} h`;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** "2 minutes ago", "yesterday"… for recent times, a date for older ones. */
export function ago(iso) {
  if (!iso) return "";
  const then = new Date(iso);
  const seconds = (then.getTime() - Date.now()) / 1000;
  const abs = Math.abs(seconds);
  if (abs < 45) return "just now";
  if (abs < 3600) return relative.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return relative.format(Math.round(seconds / 3600), "hour");
  if (abs < 7 * 86400) return relative.format(Math.round(seconds / 86400), "day");
  return absolute.format(then);
}

export function fullTime(iso) {
  return iso ? absolute.format(new Date(iso)) : "";
}

/** What an error code means for the person in front of the screen. */
export function plainError(code, message, retryAfter) {
  switch (code) {
    case "rate_limited":
      return retryAfter
        ? `That is more than the station relays at once. You can try again in ${waitWords(retryAfter)}.`
        : "That is more than the station relays at once. Wait a little and try again.";
    case "unavailable":
    case "upstream_error":
      return "The station cannot take this right now. Try again in a moment.";
    case "network":
      return "The station is out of reach. Check your connection and try again.";
    case "not_found":
      return "That no longer exists — it may have been deleted.";
    case "too_large":
      return "That message is too long to send. Shorten it and try again.";
    case "timeout":
      return "The reply did not arrive in time. Send your message again.";
    case "disconnected":
      return "The connection dropped before the station confirmed this. Send it again.";
    case "invalid":
      return message ? `That was not accepted: ${message}.` : "That was not accepted.";
    default:
      return message || "Something went wrong. Try again.";
  }
}

/** Give a turn failure's reason in plain words (chat already writes most of them for people). */
export function turnFailureWords(reason) {
  if (!reason || reason === "unavailable") return "The character could not answer right now. Try again.";
  if (reason === "timeout") return "The reply stopped arriving. Try sending your message again.";
  return reason.charAt(0).toUpperCase() + reason.slice(1) + (/[.!?]$/.test(reason) ? "" : ".");
}

/** A countdown that calls tick(secondsLeft) each second and done() at zero; returns a stop function. */
export function countdown(seconds, tick, done) {
  const until = Date.now() + seconds * 1000;
  let timer = null;
  const step = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) {
      done();
      return;
    }
    tick(left);
    timer = setTimeout(step, 1000);
  };
  step();
  return () => clearTimeout(timer);
}

export function randomId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}
