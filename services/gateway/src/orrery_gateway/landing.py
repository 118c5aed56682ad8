"""The page an emailed magic link opens: it signs in with the token and hands the session to the web app.

The token leaves the address bar at once (history.replaceState) and the page sends no Referer, so the
single-use secret ends up in no history, log or third-party request.

A guest that asked for the link sends its guest token too, so its conversations move to the account (the auth
service folds in only the guest the link was asked for by). A browser that holds a session but did not ask for
this link (someone else's link, opened here) is asked before anything happens: signing in would leave the
session it has, and the page says so and which session that is.

The page's own script and style are allowed by their hashes; nothing else may run, load or frame it.
"""

from __future__ import annotations

import base64
import hashlib

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

SESSION_KEY = "orrery.session"
UPGRADE_KEY = "orrery.upgrading"  # written by the web client when a guest asks for a link

STYLE = """body{background:#0b0b1a;color:#e8e6ff;font:16px system-ui,sans-serif;display:grid;place-items:center;
min-height:100vh;margin:0}main{max-width:28rem;padding:2rem;text-align:center}a{color:#9fe8ff}
button{font:inherit;margin:.5rem;padding:.5rem 1rem;border-radius:.5rem;border:1px solid #9fe8ff;
background:#151036;color:#e8e6ff;cursor:pointer}"""

SCRIPT = """
(async () => {
  const KEY = "__KEY__";
  const UPGRADE = "__UPGRADE__";
  const status = document.getElementById("status");
  const choice = document.getElementById("choice");
  const token = new URLSearchParams(location.search).get("token");
  history.replaceState(null, "", "/auth/verify");
  if (!token) { status.textContent = "This sign-in link is incomplete."; return; }
  const read = (key) => { try { return JSON.parse(localStorage.getItem(key) || "null"); } catch (e) { return null; } };
  const previous = read(KEY);
  const pending = read(UPGRADE);
  const user = previous && previous.user;
  const askedHere = Boolean(user && user.is_guest && pending && pending.guest === user.id);
  if (user && !askedHere) {
    const who = user.is_guest ? "the guest " + user.username : user.username + " (" + (user.email || "") + ")";
    status.textContent = "This sign-in link was not asked for from this browser, which is signed in as " + who +
      ". Opening it signs you in to the account the link was sent to" +
      (user.is_guest ? "; the guest's conversations stay with the guest." : ".");
    const go = document.createElement("button");
    go.textContent = "Sign in with this link";
    const stay = document.createElement("button");
    stay.textContent = user.is_guest ? "Stay the guest" : "Stay " + user.username;
    choice.append(go, stay);
    const decided = await new Promise((resolve) => {
      go.addEventListener("click", () => resolve(true));
      stay.addEventListener("click", () => resolve(false));
    });
    choice.replaceChildren();
    if (!decided) { location.replace("/"); return; }
    status.textContent = "Signing you in…";
  }
  const headers = {"Content-Type": "application/json"};
  if (askedHere && previous.access_token) headers["Authorization"] = "Bearer " + previous.access_token;
  let response = await fetch("/api/auth/verify", {method: "POST", headers, body: JSON.stringify({token})});
  if (response.status === 401 && headers["Authorization"]) {
    delete headers["Authorization"];  // an expired guest token must not waste the link
    response = await fetch("/api/auth/verify", {method: "POST", headers, body: JSON.stringify({token})});
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error && body.error.message) || "This sign-in link did not work.";
    status.textContent = message + " ";
    const again = document.createElement("a"); again.href = "/"; again.textContent = "Ask for a new link";
    status.append(again);
    return;
  }
  if (!askedHere) localStorage.removeItem(UPGRADE);
  localStorage.setItem(KEY, JSON.stringify(body));
  location.replace("/");
})();
""".replace("__KEY__", SESSION_KEY).replace("__UPGRADE__", UPGRADE_KEY)

PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>Signing in — Orrery</title>
<style>{STYLE}</style></head>
<body><main><h1>Orrery</h1><p id="status" role="status">Signing you in…</p><p id="choice"></p></main>
<script>{SCRIPT}</script></body></html>
"""


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


CSP = (
    f"default-src 'none'; script-src {_hash(SCRIPT)}; style-src {_hash(STYLE)}; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@router.get("/auth/verify", response_class=HTMLResponse, tags=["auth"])
async def verify_landing() -> HTMLResponse:
    """The emailed link's page (the token stays in the browser: it is posted to /api/auth/verify)."""
    return HTMLResponse(PAGE, headers=HEADERS)
