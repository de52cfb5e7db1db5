"""Discovery documents: RFC 8414 metadata and SMART App Launch 2 `.well-known/smart-configuration`."""

from __future__ import annotations


async def test_smart_configuration(api):
    resp = await api.http.get("/fhir/R4/.well-known/smart-configuration")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    conf = resp.json()
    assert conf["issuer"] == "http://testserver"
    assert conf["token_endpoint"] == "http://testserver/oauth/token"
    assert conf["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    assert conf["introspection_endpoint"] == "http://testserver/oauth/introspect"
    assert conf["revocation_endpoint"] == "http://testserver/oauth/revoke"
    assert conf["grant_types_supported"] == ["client_credentials", "authorization_code", "refresh_token"]
    assert {"client-confidential-asymmetric", "permission-v2", "permission-v1",
            "permission-patient"} <= set(conf["capabilities"])
    assert "private_key_jwt" in conf["token_endpoint_auth_methods_supported"]
    assert set(conf["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert "system/*.rs" in conf["scopes_supported"]
    assert all(url.startswith("http://") for key, url in conf.items() if key.endswith(("_endpoint", "_uri")))


async def test_rfc8414_metadata_and_jwks(api):
    meta = (await api.http.get("/.well-known/oauth-authorization-server")).json()
    for field in ("issuer", "token_endpoint", "jwks_uri", "introspection_endpoint", "revocation_endpoint",
                  "grant_types_supported", "token_endpoint_auth_methods_supported", "scopes_supported"):
        assert meta[field], field
    smart = (await api.http.get("/fhir/R4/.well-known/smart-configuration")).json()
    for field in ("issuer", "token_endpoint", "jwks_uri", "token_endpoint_auth_methods_supported"):
        assert smart[field] == meta[field]
    jwks = (await api.http.get("/.well-known/jwks.json")).json()
    assert jwks["keys"]
    assert all("d" not in key for key in jwks["keys"])  # public halves only


async def test_discovery_lists_the_patient_app_flow(api):
    meta = (await api.http.get("/.well-known/oauth-authorization-server")).json()
    smart = (await api.http.get("/fhir/R4/.well-known/smart-configuration")).json()
    for doc in (meta, smart):
        assert doc["authorization_endpoint"] == "http://testserver/oauth/authorize"
        assert {"authorization_code", "refresh_token", "client_credentials"} <= set(doc["grant_types_supported"])
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert doc["response_types_supported"] == ["code"]
        assert "none" in doc["token_endpoint_auth_methods_supported"]
        assert {"patient/Observation.rs", "patient/Patient.rs", "patient/Flag.rs", "system/Observation.cruds",
                "patient/Measurement.cruds", "offline_access", "launch/patient"} <= set(doc["scopes_supported"])
    assert {"launch-standalone", "client-public", "context-standalone-patient", "permission-offline",
            "permission-patient", "client-confidential-asymmetric", "permission-v2"} <= set(smart["capabilities"])
    caps = (await api.http.get("/fhir/R4/metadata")).json()
    uris = {e["url"]: e["valueUri"] for e in caps["rest"][0]["security"]["extension"][0]["extension"]}
    assert uris["authorize"] == meta["authorization_endpoint"]
    assert uris["token"] == meta["token_endpoint"]
