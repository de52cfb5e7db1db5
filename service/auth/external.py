"""Resource-server mode: access tokens from operator-configured external issuers (e.g. an EHR's own
authorization server), verified with that issuer's JWKS; the organization (and patient) come from the
claims the operator named. A token from an issuer that is not configured is refused."""

from __future__ import annotations

import time
from uuid import UUID

import orjson
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from service.auth.assertions import AssertionError_, fetch_jwks
from service.auth.principal import Principal
from service.auth.scopes import ScopeError, parse_scopes
from service.errors import Unauthenticated
from service.settings import ExternalIssuer

JWKS_TIMEOUT = 3.0
JWKS_TTL = 300.0
JWKS_MIN_REFETCH = 10.0


class ExternalIssuers:
    def __init__(self, issuers: list[ExternalIssuer], *, allow_private: bool = False) -> None:
        self.by_issuer = {i.issuer: i for i in issuers}
        self._keys: dict[str, tuple[float, KeySet]] = {}
        self._allow_private = allow_private  # JWKS_ALLOW_PRIVATE_TARGETS: the outbound guard (service.outbound)

    def __contains__(self, issuer: object) -> bool:
        return issuer in self.by_issuer

    async def verify(self, token: str, issuer: str) -> Principal:
        conf = self.by_issuer[issuer]
        try:
            claims = dict(jwt.decode(token, await self._keyset(conf), algorithms=conf.algorithms).claims)
        except InvalidKeyIdError:
            try:
                claims = dict(jwt.decode(token, await self._keyset(conf, refresh=True),
                                         algorithms=conf.algorithms).claims)
            except (JoseError, ValueError) as exc:
                raise Unauthenticated("The token is signed by a key its issuer does not publish") from exc
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("The token is not valid or its signature does not verify") from exc
        try:
            jwt.JWTClaimsRegistry(
                leeway=5,
                iss={"essential": True, "value": conf.issuer},
                aud={"essential": True, "value": conf.audience},
                exp={"essential": True},
            ).validate(claims)
            org_id = UUID(str(claims[conf.org_claim]))
            raw_patient = claims.get(conf.patient_claim) if conf.patient_claim else None
            patient = UUID(str(raw_patient)) if raw_patient else None
            scope_value = claims.get(conf.scope_claim)
            if isinstance(scope_value, list):
                scope_value = " ".join(str(s) for s in scope_value)
            scopes = parse_scopes(scope_value if isinstance(scope_value, str) else None)
        except (JoseError, ScopeError, KeyError, ValueError, TypeError) as exc:
            raise Unauthenticated(f"The token is not valid: {exc}") from exc
        if patient is not None:
            scopes = [s for s in scopes if s.context == "patient"]
        app_id = str(claims.get("client_id") or claims.get("azp") or claims.get("sub") or "external")
        return Principal(
            org_id=org_id, app_id=app_id, subject=str(claims.get("sub") or app_id), scopes=scopes,
            patient_id=patient, token_id=claims.get("jti"), expires_at=int(claims["exp"]), issuer=conf.issuer,
        )

    async def _keyset(self, conf: ExternalIssuer, refresh: bool = False) -> KeySet:
        now = time.monotonic()
        hit = self._keys.get(conf.issuer)
        if hit and (now - hit[0] < JWKS_MIN_REFETCH or (not refresh and now - hit[0] < JWKS_TTL)):
            return hit[1]
        try:
            if conf.jwks_file:
                keys = KeySet.import_key_set(orjson.loads(conf.jwks_file.read_bytes()))
            elif conf.jwks_url:
                keys = await fetch_jwks(conf.jwks_url, self._allow_private)
            else:
                raise ValueError("no jwks_url or jwks_file")
        except (OSError, AssertionError_, JoseError, KeyError, TypeError, ValueError) as exc:
            if hit:
                return hit[1]
            raise Unauthenticated("The token's issuer keys could not be loaded") from exc
        self._keys[conf.issuer] = (now, keys)
        return keys
