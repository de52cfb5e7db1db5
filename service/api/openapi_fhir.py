"""JSON Schemas of what the FHIR facade and the OAuth endpoints answer, for the OpenAPI document.

They describe the fields this service writes (FHIR R4 allows more; ``additionalProperties`` stays open on
resources so that a generated client keeps what it does not know). Referenced by service.api.openapi.
"""

from __future__ import annotations

from typing import Any

REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


_STR = {"type": "string"}
_CODING = {"type": "object", "properties": {"system": _STR, "code": _STR, "display": _STR}}
_CONCEPT = {"type": "object", "properties": {"coding": {"type": "array", "items": ref("FhirCoding")}, "text": _STR}}
_REFERENCE = {"type": "object", "properties": {"reference": _STR, "display": _STR}}
_IDENTIFIER = {"type": "object", "properties": {"system": _STR, "value": _STR}}
_QUANTITY = {"type": "object", "properties": {"value": {"type": "number"}, "unit": _STR, "system": _STR,
                                                "code": _STR}}
_EXTENSION = {"type": "object", "required": ["url"], "properties": {
    "url": _STR, "valueString": _STR, "valueCode": _STR, "valueInteger": {"type": "integer"},
    "valueBoolean": {"type": "boolean"}, "valueDateTime": _STR, "valueReference": ref("FhirReference")},
    "additionalProperties": True}
_META = {"type": "object", "properties": {"versionId": _STR, "lastUpdated": {"type": "string", "format": "date-time"},
                                          "profile": {"type": "array", "items": _STR}}}


def _array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": ref(name)}


def _resource(resource_type: str, doc: str, /, **props: Any) -> dict[str, Any]:
    return {
        "type": "object", "description": doc, "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "enum": [resource_type]}, "id": _STR, "meta": ref("FhirMeta"),
                       "identifier": _array("FhirIdentifier"), "extension": _array("FhirExtension"), **props},
        "additionalProperties": True,
    }


_OBSERVATION_COMPONENT = {"type": "object", "properties": {
    "code": ref("FhirCodeableConcept"), "valueInteger": {"type": "integer"}, "valueQuantity": ref("FhirQuantity"),
    "valueString": _STR, "valueCodeableConcept": ref("FhirCodeableConcept")}}
_QR_ITEM = {"type": "object", "required": ["linkId"], "properties": {
    "linkId": _STR, "text": _STR, "answer": {"type": "array", "items": {"type": "object", "properties": {
        "valueCoding": ref("FhirCoding"), "valueInteger": {"type": "integer"}}}}}}

FHIR_SCHEMAS: dict[str, dict[str, Any]] = {
    "FhirCoding": _CODING,
    "FhirCodeableConcept": _CONCEPT,
    "FhirReference": _REFERENCE,
    "FhirIdentifier": _IDENTIFIER,
    "FhirQuantity": _QUANTITY,
    "FhirExtension": _EXTENSION,
    "FhirMeta": _META,
    "OperationOutcome": {
        "type": "object", "description": "FHIR R4 OperationOutcome: why a request failed",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
            "issue": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string", "enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string", "description": "FHIR issue type (e.g. not-found, invalid, forbidden)"},
                    "details": ref("FhirCodeableConcept"), "diagnostics": _STR,
                    "expression": {"type": "array", "items": _STR},
                }}},
        },
    },
    "FhirResource": _resource("Resource", "Any FHIR R4 resource this facade serves", resourceType=_STR),
    "FhirPatient": _resource("Patient", "A client", active={"type": "boolean"}, name={"type": "array", "items": {
        "type": "object", "properties": {"text": _STR, "family": _STR, "given": {"type": "array", "items": _STR}}}},
        birthDate={"type": "string", "format": "date"}, communication={"type": "array", "items": {"type": "object"}}),
    "FhirGoal": _resource("Goal", "A goal", lifecycleStatus=_STR, achievementStatus=ref("FhirCodeableConcept"),
                      description=ref("FhirCodeableConcept"), subject=ref("FhirReference"), startDate=_STR,
                      target={"type": "array", "items": {"type": "object", "additionalProperties": True}},
                      addresses=_array("FhirReference"), note={"type": "array", "items": {"type": "object"}}),
    "FhirObservation": _resource("Observation", "A measurement (instruments as panels), a strength, a protective "
                             "factor or an exception", status=_STR, category=_array("FhirCodeableConcept"),
                             code=ref("FhirCodeableConcept"), subject=ref("FhirReference"),
                             focus=_array("FhirReference"),
                             effectiveDateTime={"type": "string", "format": "date-time"}, issued=_STR,
                             valueQuantity=ref("FhirQuantity"), valueInteger={"type": "integer"}, valueString=_STR,
                             valueCodeableConcept=ref("FhirCodeableConcept"),
                             component={"type": "array", "items": _OBSERVATION_COMPONENT},
                             hasMember=_array("FhirReference"), derivedFrom=_array("FhirReference"),
                             note={"type": "array", "items": {"type": "object"}}),
    "FhirFlag": _resource("Flag", "A safety alert (category safety)", status=_STR,
                          category=_array("FhirCodeableConcept"),
                      code=ref("FhirCodeableConcept"), subject=ref("FhirReference"),
                      period={"type": "object", "properties": {"start": _STR, "end": _STR}}),
    "FhirQuestionnaireResponse": _resource(
        "QuestionnaireResponse", "A PHQ-9 or GAD-7 response (SDC)", questionnaire=_STR, status=_STR,
        subject=ref("FhirReference"), authored={"type": "string", "format": "date-time"},
        item={"type": "array", "items": _QR_ITEM}),
    "FhirGroup": _resource("Group", "The organization's caseload", type=_STR, actual={"type": "boolean"},
                       quantity={"type": "integer"}, name=_STR,
                       member={"type": "array", "items": {"type": "object",
                                                          "properties": {"entity": ref("FhirReference")}}}),
    "FhirCapabilityStatement": _resource("CapabilityStatement", "What this FHIR server supports", status=_STR,
                                     date=_STR, kind=_STR, fhirVersion=_STR,
                                     format={"type": "array", "items": _STR},
                                     rest={"type": "array", "items": {"type": "object", "additionalProperties": True}},
                                     ) | {"example": {"resourceType": "CapabilityStatement", "status": "active",
                                                      "kind": "instance", "fhirVersion": "4.0.1",
                                                      "format": ["application/fhir+json"]}},
    "FhirBundle": {
        "type": "object", "description": "FHIR R4 searchset or history Bundle", "required": ["resourceType", "type"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["Bundle"]}, "id": _STR, "meta": ref("FhirMeta"),
            "type": {"type": "string", "enum": ["searchset", "history"]}, "total": {"type": "integer"},
            "link": {"type": "array", "items": {"type": "object", "properties": {"relation": _STR, "url": _STR}}},
            "entry": {"type": "array", "items": {"type": "object", "properties": {
                "fullUrl": _STR, "resource": ref("FhirResource"),
                "search": {"type": "object", "properties": {"mode": _STR}},
                "request": {"type": "object", "properties": {"method": _STR, "url": _STR}},
                "response": {"type": "object", "properties": {"status": _STR, "etag": _STR}}}}},
        },
        "additionalProperties": True,
    },
    "BulkExportManifest": {
        "type": "object", "description": "FHIR Bulk Data export manifest",
        "required": ["transactionTime", "request", "requiresAccessToken", "output", "error"],
        "properties": {
            "transactionTime": {"type": "string", "format": "date-time"}, "request": _STR,
            "requiresAccessToken": {"type": "boolean"},
            "output": {"type": "array", "items": ref("BulkExportFile")},
            "error": {"type": "array", "items": ref("BulkExportFile")},
            "extension": {"type": "object", "additionalProperties": True},
        },
    },
    "BulkExportFile": {"type": "object", "required": ["type", "url"], "properties": {
        "type": _STR, "url": _STR, "count": {"type": "integer"}}},
}

_SCOPES = {"type": "array", "items": _STR}
OAUTH_SCHEMAS: dict[str, dict[str, Any]] = {
    "TokenResponse": {
        "type": "object", "description": "RFC 6749 section 5.1 access token response",
        "required": ["access_token", "token_type", "expires_in", "scope"],
        "properties": {
            "access_token": {"type": "string", "description": "A signed JWT"},
            "token_type": {"type": "string", "enum": ["Bearer"]},
            "expires_in": {"type": "integer", "description": "Seconds"},
            "scope": {"type": "string", "description": "The granted scopes, space-separated"},
            "refresh_token": {"type": "string", "description": "Authorization code and refresh grants only"},
            "patient": {"type": "string", "format": "uuid", "description": "Patient-context tokens: the client"},
        },
        "example": {"access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6IjEifQ.e30.sig", "token_type": "Bearer",
                    "expires_in": 900, "scope": "system/Strength.rs"},
    },
    "OAuthError": {
        "type": "object", "description": "RFC 6749 section 5.2 error response", "required": ["error"],
        "properties": {"error": _STR, "error_description": _STR},
        "example": {"error": "invalid_client", "error_description": "Client authentication failed"},
    },
    "IntrospectionResponse": {
        "type": "object", "description": "RFC 7662 introspection response", "required": ["active"],
        "properties": {
            "active": {"type": "boolean"}, "scope": _STR, "client_id": _STR,
            "token_type": {"type": "string", "enum": ["Bearer"]}, "exp": {"type": "integer"}, "iss": _STR,
            "sub": _STR, "org_id": {"type": "string", "format": "uuid"}, "jti": _STR,
            "patient": {"type": "string", "format": "uuid"},
        },
        "example": {"active": True, "scope": "system/Strength.rs", "client_id": "app_x1", "token_type": "Bearer",
                    "exp": 1796000000, "iss": "https://api.example.org", "sub": "app_x1",
                    "org_id": "0190c7a4-5f5e-7c1a-9d1e-4a2b3c4d5e6f"},
    },
    "RevocationResponse": {"type": "object", "description": "RFC 7009: always empty", "properties": {},
                           "example": {}},
    "AuthorizationServerMetadata": {
        "type": "object", "description": "RFC 8414 authorization server metadata",
        "required": ["issuer", "token_endpoint", "jwks_uri", "grant_types_supported", "scopes_supported"],
        "properties": {
            "issuer": _STR, "authorization_endpoint": _STR, "token_endpoint": _STR, "jwks_uri": _STR,
            "introspection_endpoint": _STR, "revocation_endpoint": _STR, "grant_types_supported": _SCOPES,
            "response_types_supported": _SCOPES, "response_modes_supported": _SCOPES,
            "code_challenge_methods_supported": _SCOPES, "token_endpoint_auth_methods_supported": _SCOPES,
            "token_endpoint_auth_signing_alg_values_supported": _SCOPES,
            "introspection_endpoint_auth_methods_supported": _SCOPES,
            "revocation_endpoint_auth_methods_supported": _SCOPES, "scopes_supported": _SCOPES,
            "capabilities": {"type": "array", "items": _STR, "description": "SMART configuration only"},
        },
        "additionalProperties": True,
        "example": {"issuer": "https://api.example.org", "token_endpoint": "https://api.example.org/oauth/token",
                    "jwks_uri": "https://api.example.org/.well-known/jwks.json",
                    "grant_types_supported": ["client_credentials"], "scopes_supported": ["system/*.rs"]},
    },
    "JsonWebKeySet": {
        "type": "object", "description": "RFC 7517 JWK set (public keys only)", "required": ["keys"],
        "properties": {"keys": {"type": "array", "items": {"type": "object", "required": ["kty"], "properties": {
            "kty": _STR, "kid": _STR, "alg": _STR, "use": _STR, "crv": _STR, "x": _STR, "y": _STR, "n": _STR,
            "e": _STR}, "additionalProperties": True}}},
        "example": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
                              "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                              "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]},
    },
}

# operation id -> (status, media type, schema name) of a reply FastAPI cannot see (the routes answer JSONOut)
REPLIES: dict[str, list[tuple[str, str, str]]] = {
    "token": [("200", "application/json", "TokenResponse"), ("400", "application/json", "OAuthError"),
              ("401", "application/json", "OAuthError")],
    "introspect": [("200", "application/json", "IntrospectionResponse"), ("400", "application/json", "OAuthError"),
                   ("401", "application/json", "OAuthError")],
    "revoke": [("200", "application/json", "RevocationResponse"), ("400", "application/json", "OAuthError"),
               ("401", "application/json", "OAuthError")],
    "authorize": [("400", "application/json", "OAuthError")],
    "fhir_capabilities": [("200", "application/fhir+json", "FhirCapabilityStatement")],
    "oauth_metadata": [("200", "application/json", "AuthorizationServerMetadata")],
    "smart_configuration": [("200", "application/json", "AuthorizationServerMetadata")],
    "jwks": [("200", "application/json", "JsonWebKeySet")],
}

