// The signed-in session: the token response kept in localStorage under "orrery.session" (the magic-link
// landing page writes the same key), with the access token renewed before it expires.
//
// Renewals are serialised: the auth service treats a refresh token presented twice as stolen and revokes the
// whole family. Within a tab one renewal runs at a time; across tabs a Web Lock makes them take turns, and a
// tab that waited adopts the tokens the other one stored instead of spending the old refresh token. Inside the
// lock the tokens are read from IndexedDB too: a write to localStorage by another tab may reach this tab's
// copy a moment late, while an IndexedDB transaction committed before the lock was released is always seen.
//
// Expiry is reckoned on this machine's clock from when the tokens arrived (`expires_in`), so a computer whose
// clock is off does not renew too early or too late.

export const SESSION_KEY = "orrery.session";
const LOCK_NAME = "orrery.session.refresh";
const MARGIN_MS = 90_000; // renew this long before expiry at most (the servers tolerate 30 s of clock skew)
const DB_NAME = "orrery";
const DB_STORE = "session";

export class SignedOut extends Error {
  constructor(code = "signed_out") {
    super(code);
    this.code = code;
  }
}

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return {};
  }
}

/** When the server issued a session's access token (its `iat`, seconds): the newer session wins. */
function issuedAt(tokens) {
  const { iat } = claims(tokens?.access_token ?? "");
  return typeof iat === "number" ? iat : 0;
}

function lifetimeMs(tokens) {
  if (typeof tokens.expires_in === "number") return tokens.expires_in * 1000;
  const { exp, iat } = claims(tokens.access_token);
  return typeof exp === "number" && typeof iat === "number" ? (exp - iat) * 1000 : 900_000;
}

/** Local time (ms) at which the tokens stop working. */
export function expiresAt(tokens) {
  return (tokens.received_at ?? Date.now()) + lifetimeMs(tokens);
}

/** How long before expiry to renew: 90 s, or a quarter of the token's lifetime when that is shorter. */
export function renewalMargin(tokens) {
  return Math.min(MARGIN_MS, lifetimeMs(tokens) / 4);
}

function valid(value) {
  return value && typeof value.access_token === "string" && typeof value.refresh_token === "string" ? value : null;
}

function readLocal() {
  let value;
  try {
    value = valid(JSON.parse(localStorage.getItem(SESSION_KEY) || "null"));
  } catch {
    return null;
  }
  // The sign-in landing page stores the response as it came: it arrived just now.
  return value && !value.received_at ? { ...value, received_at: Date.now() } : value;
}

function writeLocal(tokens) {
  localStorage.setItem(SESSION_KEY, JSON.stringify(tokens));
}

function newest(a, b) {
  if (!a || !b) return a || b;
  return issuedAt(b) > issuedAt(a) ? b : a;
}

// --- IndexedDB: one record, the latest session (absent where IndexedDB is not available) ---

let database = null;

function openDatabase() {
  if (!database) {
    database = new Promise((resolve, reject) => {
      if (!("indexedDB" in window)) {
        reject(new Error("no IndexedDB"));
        return;
      }
      const request = indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = () => request.result.createObjectStore(DB_STORE);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }
  return database;
}

async function dbRun(mode, operate) {
  const db = await openDatabase();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(DB_STORE, mode);
    const request = operate(tx.objectStore(DB_STORE));
    tx.oncomplete = () => resolve(request.result ?? null);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

const dbRead = () => dbRun("readonly", (store) => store.get("tokens")).then(valid, () => null);
const dbWrite = (tokens) => dbRun("readwrite", (store) => store.put(tokens, "tokens")).catch(() => {});
const dbClear = () => dbRun("readwrite", (store) => store.delete("tokens")).catch(() => {});

export class Session extends EventTarget {
  constructor() {
    super();
    this.data = readLocal();
    if (this.data && !JSON.parse(localStorage.getItem(SESSION_KEY)).received_at) writeLocal(this.data);
    this.inflight = null;
    this.timer = null;
    this.schedule();
    // Another tab signed in, renewed or signed out: follow it.
    window.addEventListener("storage", (event) => {
      if (event.key !== SESSION_KEY) return;
      const stored = readLocal();
      const before = this.data;
      if (stored && before && issuedAt(stored) < issuedAt(before)) return; // older news than ours
      this.data = stored;
      this.schedule();
      if (!stored && before) this.dispatchEvent(new CustomEvent("signedout", { detail: { code: "signed_out" } }));
      else if (stored && (!before || before.user?.id !== stored.user?.id)) this.dispatchEvent(new Event("userchange"));
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.data && this.expiresAt() - Date.now() < this.margin()) {
        this.refresh().catch(() => {});
      }
    });
  }

  get user() {
    return this.data?.user ?? null;
  }

  get signedIn() {
    return this.data !== null;
  }

  expiresAt() {
    return this.data ? expiresAt(this.data) : 0;
  }

  margin() {
    return this.data ? renewalMargin(this.data) : MARGIN_MS;
  }

  /** Store a token response (sign-in, guest or renewal); resolves once every tab can see it. */
  save(tokens) {
    const stamped = { ...tokens, received_at: Date.now() };
    const userChanged = this.data?.user?.id !== stamped.user?.id;
    this.data = stamped;
    writeLocal(stamped);
    this.schedule();
    if (userChanged) this.dispatchEvent(new Event("userchange"));
    return dbWrite(stamped);
  }

  /** Forget the session locally (and tell the listeners why). */
  clear(code = "signed_out") {
    const had = this.data !== null;
    this.data = null;
    localStorage.removeItem(SESSION_KEY);
    dbClear();
    clearTimeout(this.timer);
    if (had) this.dispatchEvent(new CustomEvent("signedout", { detail: { code } }));
  }

  /** A valid access token, renewed first when it is about to expire. */
  async accessToken() {
    if (!this.data) throw new SignedOut();
    if (this.expiresAt() - Date.now() > this.margin()) return this.data.access_token;
    await this.refresh();
    if (!this.data) throw new SignedOut();
    return this.data.access_token;
  }

  /** The current access token without waiting (for <img src>); may be close to expiry. */
  peekToken() {
    return this.data?.access_token ?? "";
  }

  /** Renew now (force: even if the token looks fresh, e.g. after a 401). One at a time, across tabs. */
  refresh({ force = false } = {}) {
    if (!this.inflight) {
      const spent = this.data?.refresh_token;
      const run = () => this.#refresh(spent, force);
      const locked = navigator.locks ? navigator.locks.request(LOCK_NAME, run) : run();
      this.inflight = locked.finally(() => {
        this.inflight = null;
      });
    }
    return this.inflight;
  }

  async #refresh(spent, force) {
    const stored = newest(readLocal(), await dbRead());
    if (!stored) {
      this.clear("signed_out");
      throw new SignedOut();
    }
    if (stored.refresh_token !== spent) {
      // Renewed by another tab while this one waited for the lock: use its tokens, never spend the old one.
      this.data = stored;
      if (readLocal()?.refresh_token !== stored.refresh_token) writeLocal(stored);
      this.schedule();
      if (!force && expiresAt(stored) - Date.now() > renewalMargin(stored)) return;
    }
    let response;
    try {
      response = await fetch("/api/auth/refresh", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: stored.refresh_token }),
      });
    } catch {
      this.schedule(15_000); // offline: keep the session and try again soon
      throw new Error("network");
    }
    if (response.ok) {
      await this.save(await response.json()); // committed before the lock is released
      return;
    }
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 422) {
      const code = body?.error?.code || "signed_out";
      this.clear(code);
      throw new SignedOut(code);
    }
    this.schedule(15_000);
    throw new Error(`refresh failed with ${response.status}`);
  }

  schedule(delay) {
    clearTimeout(this.timer);
    if (!this.data) return;
    const wait = delay ?? Math.max(1_000, this.expiresAt() - Date.now() - this.margin());
    this.timer = setTimeout(() => this.refresh().catch(() => {}), Math.min(wait, 2_147_000_000));
  }

  async signOut() {
    const refreshToken = this.data?.refresh_token;
    this.clear("signed_out_here");
    if (refreshToken) {
      await fetch("/api/auth/logout", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: refreshToken }),
      }).catch(() => {});
    }
  }
}
