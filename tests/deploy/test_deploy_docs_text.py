"""README.md and docs/ checked against the repository and the code: every link stays inside the repository
and resolves, the README's quick start is two make targets and its configuration table names every setting,
and every route the API guide names is served."""

from __future__ import annotations

import json
import re

from service.settings import PROJECT_ROOT, Settings

README = PROJECT_ROOT / "README.md"
GUIDE = PROJECT_ROOT / "docs" / "api-guide.md"
PAGES = [README, *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Routes served outside the OpenAPI document (include_in_schema=False).
UNDOCUMENTED_ROUTES = {"/graphql", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"}
BASES = {"/v1", "/fhir/R4", "/oauth"}
# Routes the guide documents that land from a parallel branch (issue 24); empty this set once they are merged.
LANDING = {
    "/v1/webhook-subscriptions/{}/ping",
    "/v1/webhook-subscriptions/{}/deliveries/{}/redeliver",
    "/v1/webhook-subscriptions/{}/rotate-secret",
}


def test_every_link_stays_inside_the_repository_and_resolves():
    for page in PAGES:
        text = page.read_text()
        assert "shared/" not in text, page
        assert "CONTRACT.md" not in text, page
        for target in LINK.findall(text):
            assert not re.match(r"^[a-z]+:", target), f"{page.name} links outside the repository: {target}"
            path = (page.parent / target.split("#", 1)[0]).resolve()
            assert path.is_relative_to(PROJECT_ROOT), f"{page.name} links outside the repository: {target}"
            assert path.exists(), f"{page.name}: broken link {target}"


def test_readme_opens_with_two_make_targets_and_ci_runs_the_second():
    text = README.read_text()
    assert text.index("## Quick start") < text.index("\n## ", text.index("## Quick start") + 1)
    block = text.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make run", "make test"]
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M)
    assert re.search(r"^test:", makefile, re.M)
    assert "make test" in (PROJECT_ROOT / ".ci" / "run").read_text()
    assert text.index("## Quick start") < text.index("## Configuration") < text.index("## API overview")


def test_readme_configuration_names_every_setting():
    config = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in config]
    assert not missing, f"settings missing from the README's configuration table: {missing}"


def _template(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.split("?", 1)[0]).rstrip("/")


def test_every_route_the_guide_names_is_served():
    document = json.loads((PROJECT_ROOT / "openapi" / "openapi.json").read_text())
    served = {_template(p) for p in document["paths"]} | UNDOCUMENTED_ROUTES | BASES | LANDING
    collections = [m.group(1) for p in document["paths"] if (m := re.fullmatch(r"/v1/history/([a-z-]+)/\{[^}]*\}", p))]
    named = set()
    for code in re.findall(r"`([^`]+)`", GUIDE.read_text()):
        for token in code.split():
            token = token.removeprefix("$BASE")
            if not re.match(r"^/(v1|fhir/R4|oauth|\.well-known|graphql|healthz|readyz)(/|$)", token) or "..." in token:
                continue
            expanded = [token.replace("<collection>", c) for c in collections] if "<collection>" in token else [token]
            named.update(_template(t) for t in expanded)
    assert len(collections) == 11
    assert len(named) > 40
    assert not named - served, f"routes the guide names that are not served: {sorted(named - served)}"


def test_guide_scope_resources_are_the_service_s():
    from service.auth.scopes import FHIR_ALIASES, RESOURCES

    text = GUIDE.read_text()
    for name in (*RESOURCES, *FHIR_ALIASES):
        assert f"`{name}`" in text, name


def test_pages_are_linked_from_the_guide_or_readme():
    linked = set(LINK.findall(README.read_text())) | {f"docs/{t}" for t in LINK.findall(GUIDE.read_text())}
    for page in sorted((PROJECT_ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in linked, f"docs/{page.name} is linked from neither README.md nor the guide"

