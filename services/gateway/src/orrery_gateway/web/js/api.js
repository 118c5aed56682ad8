// JSON over the gateway's REST API with the session's bearer token; errors become ApiError with the
// platform's {"error": {"code", "message"}} body, the HTTP status and Retry-After.

import { SignedOut } from "./session.js";

export class ApiError extends Error {
  constructor(status, code, message, body = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

export function createApi(session) {
  return async function api(path, { method = "GET", body, auth = true } = {}) {
    for (let attempt = 0; ; attempt += 1) {
      const headers = { Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (auth) {
        try {
          headers.Authorization = `Bearer ${await session.accessToken()}`;
        } catch (error) {
          if (error instanceof SignedOut) throw error;
          throw new ApiError(0, "network", "The station is out of reach.");
        }
      }
      let response;
      try {
        response = await fetch(path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch {
        throw new ApiError(0, "network", "The station is out of reach.");
      }
      // A token refused although it looked fresh (clock skew, a rotated key): refresh once and retry.
      if (response.status === 401 && auth && attempt === 0) {
        await session.refresh({ force: true });
        continue;
      }
      if (response.status === 204) return null;
      const data = await response.json().catch(() => null);
      if (!response.ok) {
        const error = data?.error ?? {};
        const retryAfter = Number(response.headers.get("Retry-After")) || null;
        throw new ApiError(
          response.status,
          error.code || `http_${response.status}`,
          error.message || response.statusText,
          data,
          retryAfter,
        );
      }
      return data;
    }
  };
}
