"""What the tests share (test modules import from here, never from one another):

- harness, factories: the embedded server, template clones, the HTTP client with tokens; a valid body per collection
- servers: the service on a loopback port, in a thread or as a `strengths-api` process
- oauth, patient_apps: keys, assertions, JWKS servers, registered and public apps, the PKCE flow
- fhir, questionnaires, bulk: FHIR paging and validation, PHQ-9/GAD-7 bodies, Bulk Data export
- gqlkit, graphql_corpus: GraphQL requests, statement counting, the differential corpus (data/ holds its answers)
- progress, safety, webhooks, changes, audit, fastread: per-feature helpers
- schemathesis.toml, st_hooks: the schemathesis configuration and hooks (in the suite and against a live server)
"""
