"""deploy/ validated offline (issue 13): Kubernetes manifests against pinned Kubernetes schemas (kubernetes-validate
ships them), the example overlay rendered the way kustomize does for what it uses, the compose file's structure,
the Dockerfile and its lock file; and the probes and ports agree with the service's own settings and routes."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.cli import GRACEFUL_SHUTDOWN_SECONDS
from service.settings import PROJECT_ROOT, Settings

DEPLOY = PROJECT_ROOT / "deploy"
K8S_VERSIONS = ["1.30.0", "1.33.0"]  # oldest still-supported managed clusters, and the current pin
CLUSTER_SCOPED = {"Namespace"}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def base_resources(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for ref in kustomization["resources"]:
        target = (directory / ref).resolve()
        docs.extend(render(target) if target.is_dir() else load_all(target))
    return docs


def merge(base: Any, patch: Any) -> Any:
    """A strategic merge patch for what our patches use: maps merge, lists of named maps merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x
                                                                  for x in base + patch):
        out_list = [copy.deepcopy(x) for x in base]
        for item in patch:
            match = next((i for i, x in enumerate(out_list) if x["name"] == item["name"]), None)
            if match is None:
                out_list.append(item)
            else:
                out_list[match] = merge(out_list[match], item)
        return out_list
    return patch


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"] if doc["kind"] in {"Deployment", "Job"} else {}
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def render(directory: Path) -> list[dict[str, Any]]:
    """`kustomize build` for the features our kustomizations use: resources, namespace, images, labels, patches."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "resources", "namespace", "images", "patches", "labels"}
    assert set(kustomization) <= known, set(kustomization) - known
    docs = base_resources(directory)
    for patch_ref in kustomization.get("patches", []):
        patch = yaml.safe_load((directory / patch_ref["path"]).read_text())
        targets = [d for d in docs if d["kind"] == patch["kind"] and d["metadata"]["name"] == patch["metadata"]["name"]]
        assert len(targets) == 1, f"patch {patch_ref} matches {len(targets)} resources"
        docs[docs.index(targets[0])] = merge(targets[0], patch)
    for label in kustomization.get("labels", []):
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
    for doc in docs:
        if "namespace" in kustomization and doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = kustomization["namespace"]
        for container in containers(doc):
            for image in kustomization.get("images", []):
                name = container["image"].split(":")[0]
                if name in (image["name"], image.get("newName")):
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


BASE = render(DEPLOY / "k8s" / "base")
OVERLAY = render(DEPLOY / "k8s" / "overlays" / "example")


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("rendered", [BASE, OVERLAY], ids=["base", "overlay-example"])
def test_manifests_validate_against_kubernetes_schema(rendered, version):
    assert rendered
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")\
                from exc


def test_base_has_every_kind_issue_13_asks_for():
    kinds = {d["kind"] for d in BASE}
    assert kinds >= {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job",
                     "NetworkPolicy", "ConfigMap"}
    assert "Secret" not in kinds  # secrets by reference only


def test_overlay_changes_what_it_says():
    api = one(OVERLAY, "Deployment", "strengths-api")
    assert api["metadata"]["namespace"] == "strengths-example"
    assert api["spec"]["replicas"] == 3
    assert containers(api)[0]["image"] == "registry.example.com/strengths-api:1.0.0"
    assert containers(api)[0]["securityContext"]["readOnlyRootFilesystem"] is True  # the patch kept the rest
    assert one(OVERLAY, "ConfigMap", "strengths-api-config")["data"]["DB_STATEMENT_CACHE_SIZE"] == "0"


def test_config_maps_name_real_settings():
    fields = {name.upper() for name in Settings.model_fields}
    for rendered in (BASE, OVERLAY):
        data = one(rendered, "ConfigMap", "strengths-api-config")["data"]
        assert set(data) <= fields, set(data) - fields
        Settings(**{k.lower(): v for k, v in data.items()}, database_url="postgresql+asyncpg://x@h/db")


def test_probes_and_ports_match_the_service():
    from service.app import create_app

    settings = Settings()
    app = create_app(Settings(database_url="postgresql+asyncpg://unused@localhost/unused"))
    paths = {getattr(r, "path", None) for r in app.routes}
    config = one(BASE, "ConfigMap", "strengths-api-config")["data"]
    assert int(config["PORT"]) == settings.port
    api = one(BASE, "Deployment", "strengths-api")
    (container,) = containers(api)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == settings.port
    assert ports["metrics"] == int(config["METRICS_PORT"])
    assert api["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"/readyz", "/healthz", "/metrics"} <= paths
    assert config["MIGRATE_ON_START"] == "false"  # the Job migrates; the pods hold no owner credentials

    service = one(BASE, "Service", "strengths-api")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert api["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one(BASE, "PodDisruptionBudget", "strengths-api")["spec"]["selector"]["matchLabels"].items() \
        <= labels.items()
    assert one(BASE, "HorizontalPodAutoscaler", "strengths-api")["spec"]["scaleTargetRef"]["name"] == "strengths-api"
    policy = one(BASE, "NetworkPolicy", "strengths-api")
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert allowed == set(ports.values())

    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > GRACEFUL_SHUTDOWN_SECONDS + pre_stop
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]


def test_pods_run_non_root_read_only_with_secrets_by_reference():
    for doc in BASE:
        for container in containers(doc):
            pod = doc["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] != 0
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            for env in container.get("env", []):
                if re.search(r"URL|PASSWORD|SECRET|TOKEN|KEY", env["name"]) and env["name"] != "PUBLIC_URL":
                    assert "value" not in env, env
                    assert "secretKeyRef" in env["valueFrom"], env
    job = one(BASE, "Job", "strengths-api-migrate")
    assert containers(job)[0]["args"] == ["migrate"]
    env = {e["name"] for e in containers(job)[0]["env"]}
    assert {"DATABASE_URL", "MIGRATION_DATABASE_URL"} <= env
    api_env = {e["name"] for d in BASE if d["kind"] == "Deployment" for c in containers(d) for e in c.get("env", [])}
    assert "MIGRATION_DATABASE_URL" not in api_env  # owner credentials only in the migration Job
    text = "\n".join(p.read_text() for p in (DEPLOY / "k8s").rglob("*.yaml"))
    assert not re.search(r"postgres(ql)?(\+asyncpg)?://[^\s:@/]+:[^\s@]+@", text)  # no credentials in URLs


def test_compose_structure():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "api", "worker"}
    for name in ("migrate", "api", "worker"):
        svc = services[name]
        assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        assert svc["read_only"] is True
        assert svc["user"].split(":")[0] != "0"
        for env_file in svc["env_file"]:
            assert (DEPLOY / f"{env_file}.example").is_file(), env_file  # the real one is not committed
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["worker"]["command"] == ["worker"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["api"]["environment"]["MIGRATE_ON_START"] == "false"
    api_env = (DEPLOY / "env" / "api.env.example").read_text()
    assert "MIGRATION_DATABASE_URL" not in api_env
    assert "strengths_owner" not in api_env
    assert "MIGRATION_DATABASE_URL=postgresql+asyncpg://strengths_owner" in \
        (DEPLOY / "env" / "migrate.env.example").read_text()

    settings = Settings()
    command = services["api"]["command"]
    assert int(command[command.index("--port") + 1]) == settings.port
    assert services["api"]["ports"][0].endswith(f":{settings.port}")
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert int(services["api"]["stop_grace_period"].rstrip("s")) > GRACEFUL_SHUTDOWN_SECONDS

    used = {s for svc in services.values() for s in svc.get("secrets", [])}
    assert used <= set(compose["secrets"])
    assert all(set(spec) == {"file"} for spec in compose["secrets"].values())
    for value in services["postgres"]["environment"].values():
        assert value == "postgres" or value.startswith("/run/secrets/")
    assert (DEPLOY / "postgres-init" / "10-roles.sh").is_file()
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert {"env/*.env", "secrets/"} <= set(ignored)


def test_dockerfile_multi_stage_slim_non_root_from_lock():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, re.M)
    assert len(stages) >= 2
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert "--require-hashes" in text
    assert "deploy/requirements.lock" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert re.search(rf"^EXPOSE {Settings().port}$", text, re.M)
    assert re.search(r"^ENTRYPOINT \[\"strengths-api\"\]", text, re.M)


def test_lock_pins_every_runtime_dependency_with_hashes():
    lock = (DEPLOY / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", lock, re.M))
    normal = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in pins.items()}
    deps = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", dep).group(0)).lower()  # type: ignore[union-attr]
        assert name in normal, f"{name} is not pinned in deploy/requirements.lock"
    requirement_blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n", 1)[1] if lock.startswith("#") else lock)
    for block in requirement_blocks:
        if re.match(r"[A-Za-z0-9]", block):
            assert "--hash=sha256:" in block, block.splitlines()[0]
    dev_only = {"pytest", "ruff", "hypothesis"}
    assert not dev_only & set(normal)


def test_worker_probes_call_the_worker_health_server():
    """The worker Deployment's probes reach the health server `strengths-api worker` runs on WORKER_HEALTH_PORT,
    on the paths it serves from its loops' heartbeat (tests/deploy/test_worker.py: a stuck loop turns /healthz 503)."""
    import inspect

    from service import worker

    fields = {name.upper() for name in Settings.model_fields}
    for rendered in (BASE, OVERLAY):
        deployment = one(rendered, "Deployment", "strengths-api-worker")
        (container,) = containers(deployment)
        assert container["args"] == ["worker"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert "WORKER_HEALTH_PORT" in fields
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["health"] == int(env["WORKER_HEALTH_PORT"])
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        # The kubelet gives up only after longer than a healthy loop may be silent (one export step, one poll).
        liveness = container["livenessProbe"]
        assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30
        config = one(rendered, "ConfigMap", "strengths-api-config")["data"]
        assert config.get("HOST") == "0.0.0.0"  # the health server binds HOST: reachable by the kubelet
    source = inspect.getsource(worker.health_server)
    assert '"/healthz"' in source
    assert '"/readyz"' in source


def test_compose_worker_checks_its_heartbeat():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    svc = compose["services"]["worker"]
    port = svc["environment"]["WORKER_HEALTH_PORT"]
    assert f":{port}/healthz" in " ".join(svc["healthcheck"]["test"])
