"""The page an emailed magic link opens: it signs in with the token and hands the session to the web app.

The token leaves the address bar at once (history.replaceState) and the page sends no Referer, so the
single-use secret ends up in no history, log or third-party request. A guest signing in sends its guest
token too, so its conversations move to the account.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

SESSION_KEY = "orrery.session"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>Signing in — Orrery</title>
<style>body{background:#0b0b1a;color:#e8e6ff;font:16px system-ui,sans-serif;display:grid;place-items:center;
min-height:100vh;margin:0}main{max-width:28rem;padding:2rem;text-align:center}a{color:#9fe8ff}</style></head>
<body><main><h1>Orrery</h1><p id="status" role="status">Signing you in…</p></main>
<script>
(async () => {
  const KEY = "__KEY__";
  const status = document.getElementById("status");
  const token = new URLSearchParams(location.search).get("token");
  history.replaceState(null, "", "/auth/verify");
  if (!token) { status.textContent = "This sign-in link is incomplete."; return; }
  let previous = null;
  try { previous = JSON.parse(localStorage.getItem(KEY) || "null"); } catch (e) {}
  const headers = {"Content-Type": "application/json"};
  if (previous && previous.user && previous.user.is_guest && previous.access_token) {
    headers["Authorization"] = "Bearer " + previous.access_token;
  }
  let response = await fetch("/api/auth/verify", {method: "POST", headers, body: JSON.stringify({token})});
  if (response.status === 401 && headers["Authorization"]) {
    delete headers["Authorization"];  // an expired guest token must not waste the link
    response = await fetch("/api/auth/verify", {method: "POST", headers, body: JSON.stringify({token})});
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error && body.error.message) || "This sign-in link did not work.";
    status.innerHTML = "";
    status.append(message + " ");
    const again = document.createElement("a"); again.href = "/"; again.textContent = "Ask for a new link";
    status.append(again);
    return;
  }
  localStorage.setItem(KEY, JSON.stringify(body));
  location.replace("/");
})();
</script></body></html>
""".replace("__KEY__", SESSION_KEY)


@router.get("/auth/verify", response_class=HTMLResponse, tags=["auth"])
async def verify_landing() -> HTMLResponse:
    """The emailed link's page (the token stays in the browser: it is posted to /api/auth/verify)."""
    return HTMLResponse(PAGE, headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})
