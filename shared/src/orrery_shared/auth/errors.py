"""Why a bearer token was refused, as exceptions carrying a stable machine-readable code."""

from __future__ import annotations

from typing import ClassVar


class TokenError(Exception):
    """A bearer token that must not be trusted; `code` is stable and goes to clients as-is."""

    code: ClassVar[str] = "invalid_token"
    status: ClassVar[int] = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MissingToken(TokenError):
    code = "missing_token"


class MalformedToken(TokenError):
    code = "malformed"


class AlgorithmNotAllowed(TokenError):
    code = "alg_not_allowed"


class UnknownKid(TokenError):
    code = "unknown_kid"


class BadSignature(TokenError):
    code = "bad_signature"


class TokenExpired(TokenError):
    code = "expired"


class TokenNotYetValid(TokenError):
    code = "not_yet_valid"


class BadAudience(TokenError):
    code = "bad_audience"


class BadIssuer(TokenError):
    code = "bad_issuer"


class KeysUnavailable(TokenError):
    """The verification keys could not be obtained: the token may be fine, so this is a 503, not a 401."""

    code = "keys_unavailable"
    status = 503
