"""Console sign-ins: an operator key entered once becomes a signed, expiring session cookie.

The cookie holds the key's credential id, its expiry and a random nonce, signed with
HMAC-SHA256 under ``COLLECTOR_CONSOLE_SESSION_SECRET``; never the key. So a cookie read off a
browser is worth a console session until it expires and nothing against the API, and a leaked
signing secret alone yields no operator key. Each request looks the credential up again: a
revoked key's sessions end at once, and its role and customer are the stored ones. The nonce
seeds the form token (the synchronizer token against cross-site requests), which the page
carries and the HttpOnly cookie hides from scripts; the sign-in form gets a token of its own,
bound to a short-lived cookie, so no other site can sign a browser in under its own key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from collector.adapters.db.credentials import CredentialStore
from collector.errors import Forbidden, Unauthorized
from collector.services.auth import Authenticator, principal_of
from collector.services.principals import ANONYMOUS, Kind, Principal
from common.clock import Clock

NONCE_BYTES = 16
SIGN_IN_FORM_LIFETIME = timedelta(hours=1)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _same(given: str, expected: str) -> bool:
    """Constant-time equality that also takes text a client made up (any characters)."""
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class Session:
    """A verified sign-in: who, until when, and the nonce its form tokens derive from."""

    credential_id: str
    expires_at: datetime
    nonce: str


class ConsoleSessions:
    """Issues and checks session cookies and form tokens; resolves a cookie to a principal."""

    def __init__(
        self,
        credentials: CredentialStore,
        authenticator: Authenticator,
        clock: Clock,
        *,
        secret: bytes,
        lifetime: timedelta,
    ) -> None:
        self._credentials = credentials
        self._authenticator = authenticator
        self._clock = clock
        self._lifetime = lifetime
        # One key per purpose: a session signature can never pass as a form token.
        self._session_key = hmac.digest(secret, b"usage-console session", hashlib.sha256)
        self._form_key = hmac.digest(secret, b"usage-console form", hashlib.sha256)

    @classmethod
    def on(
        cls,
        engine: AsyncEngine,
        authenticator: Authenticator,
        clock: Clock,
        *,
        secret: bytes,
        lifetime: timedelta,
    ) -> ConsoleSessions:
        """Sessions whose keys are read from the credentials table of ``engine``."""
        return cls(CredentialStore(engine), authenticator, clock, secret=secret, lifetime=lifetime)

    @property
    def open(self) -> bool:
        """Authentication is off (``COLLECTOR_AUTH_DISABLED``): everyone is let in unsigned."""
        return self._authenticator.disabled

    @property
    def lifetime(self) -> timedelta:
        return self._lifetime

    async def sign_in(self, key: str) -> tuple[Principal, str]:
        """The principal of an operator ``key`` and a new session cookie for it."""
        principal = await self._authenticator.authenticate(f"Bearer {key.strip()}")
        if principal.kind is not Kind.OPERATOR:
            raise Forbidden(
                "ingest tokens only report usage; sign in with an operator key "
                "(usage-collector keys create --role viewer)",
                field="key",
            )
        expires = self._clock.now() + self._lifetime
        payload = {
            "cid": principal.credential_id,
            "exp": int(expires.timestamp()),
            "n": _b64(secrets.token_bytes(NONCE_BYTES)),
        }
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        return principal, f"{body}.{self._sign(body)}"

    def session(self, cookie: str | None) -> Session:
        """The session a cookie carries, if its signature holds and it has not expired."""
        if not cookie:
            raise Unauthorized("sign in to the console first", field="session")
        body, _, signature = cookie.partition(".")
        if not _same(signature, self._sign(body)):
            raise Unauthorized("the console session is not valid; sign in again", field="session")
        try:
            payload = json.loads(_unb64(body))
            credential_id, expires, nonce = str(payload["cid"]), int(payload["exp"]), payload["n"]
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise Unauthorized("the console session is not valid; sign in again") from exc
        expires_at = datetime.fromtimestamp(expires, UTC)
        if expires_at <= self._clock.now():
            raise Unauthorized("the console session expired; sign in again", field="session")
        return Session(credential_id, expires_at, str(nonce))

    async def principal(self, cookie: str | None) -> tuple[Principal, Session | None]:
        """Who a request runs as: the session's key, read again, or anyone with auth off."""
        if self.open:
            return ANONYMOUS, None
        session = self.session(cookie)
        credential = await self._credentials.by_id(session.credential_id, Kind.OPERATOR.value)
        if credential is None or credential.revoked:
            raise Unauthorized(
                "the key this console session was signed in with is revoked; sign in again",
                field="session",
            )
        return principal_of(credential), session

    def form_token(self, session: Session | None) -> str:
        """The token every form of this session carries (empty while auth is off)."""
        return "" if session is None else self._token("session", session.nonce)

    def check_form(self, session: Session | None, token: str | None) -> None:
        """``Forbidden`` unless ``token`` is this session's form token."""
        if session is None:
            return
        if not token or not _same(token, self.form_token(session)):
            raise Forbidden(
                "this form did not come from your console session (a stale page or another "
                "site); reload the page and try again",
                field="csrf",
            )

    @staticmethod
    def sign_in_nonce() -> str:
        """The value of the short-lived cookie a sign-in form is bound to."""
        return _b64(secrets.token_bytes(NONCE_BYTES))

    def sign_in_token(self, nonce: str) -> str:
        return self._token("sign-in", nonce)

    def check_sign_in(self, nonce: str | None, token: str | None) -> bool:
        """Whether the sign-in form's token matches the cookie the form was served with."""
        return bool(nonce and token) and _same(str(token), self.sign_in_token(str(nonce)))

    def _sign(self, body: str) -> str:
        return _b64(hmac.digest(self._session_key, body.encode(), hashlib.sha256))

    def _token(self, purpose: str, nonce: str) -> str:
        return _b64(hmac.digest(self._form_key, f"{purpose}|{nonce}".encode(), hashlib.sha256))
