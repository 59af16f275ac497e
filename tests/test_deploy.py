"""The Kubernetes manifests under deploy/ and the Dockerfile.

Every YAML file under deploy/ is loaded; the base and both overlays are
rendered by a small kustomize (only the features deploy/ uses; an unknown
kustomization field fails the test rather than being ignored) and, when
kubectl is installed, compared with `kubectl kustomize`. Every Kubernetes
resource is validated against the Kubernetes JSON schemas bundled with
kubernetes-validate (strict: unknown fields fail), every KafkaTopic against the
schema of the Strimzi KafkaTopic CRD (v1beta2), and the rules of
deploy/README.md are checked on what would be applied.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
TARGETS = ("base", "overlays/dev", "overlays/production")
SERVICES = ("ingest", "identity", "care", "marketing", "sales", "insights")
APP_UID = 10001

# The topics of ARCHITECTURE.md with their partitions; each also has a .dlq.
TOPIC_PARTITIONS = {
    "zone.interactions.raw": 12,
    "zone.interactions": 12,
    "zone.customers": 6,
    "zone.privacy": 3,
    "zone.care": 6,
    "zone.marketing": 6,
    "zone.sales": 6,
    "zone.insights": 3,
}
# The main consumed topic of each service caps its HPA: a consumer group cannot
# use more members than the topic has partitions. ingest has no high-volume
# consumer; its cap is a plain number.
MAIN_TOPIC = {
    "identity": "zone.interactions.raw",
    "care": "zone.interactions",
    "marketing": "zone.interactions",
    "sales": "zone.interactions",
    "insights": "zone.interactions",
}
INGEST_MAX_REPLICAS = 6

# The oldest Kubernetes minor we support, and the newest the package bundles.
K8S_VERSIONS = (
    "1.31",
    re.sub(r"^(\d+\.\d+).*", r"\1", kubernetes_validate.latest_version()),
)

# The CRD's openAPIV3Schema of KafkaTopic v1beta2 (Strimzi
# packaging/install/cluster-operator/043-Crd-kafkatopic.yaml) for the fields
# socialzone uses, made stricter: the API server would silently prune an
# unknown (misspelt) spec field, so here it fails; partitions, replicas,
# config and the cluster label are required.
KAFKA_TOPIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
        "kind": {"const": "KafkaTopic"},
        "metadata": {
            "type": "object",
            "required": ["name", "labels"],
            "properties": {
                # A DNS-1123 subdomain that is also a legal Kafka topic name,
                # so metadata.name is the topic's name.
                "name": {
                    "type": "string",
                    "maxLength": 249,
                    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                },
                "namespace": {"type": "string"},
                "labels": {
                    "type": "object",
                    "required": ["strimzi.io/cluster"],
                    "properties": {"strimzi.io/cluster": {"const": "socialzone"}},
                    "additionalProperties": {"type": "string"},
                },
            },
        },
        "spec": {
            "type": "object",
            "required": ["partitions", "replicas", "config"],
            "additionalProperties": False,
            "properties": {
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {
                    "type": "object",
                    "required": ["retention.ms", "min.insync.replicas"],
                    "properties": {
                        "retention.ms": {"type": "integer", "minimum": 1},
                        "min.insync.replicas": {"type": "integer", "minimum": 1},
                    },
                },
                "topicName": {"type": "string"},
            },
        },
    },
}


# --- reading deploy/ ------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_docs(path: Path) -> list[Any]:
    """Every non-empty YAML document of a file."""
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def kustomization_dirs() -> list[Path]:
    return sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))


def read_kustomization(directory: Path) -> dict[str, Any]:
    path = directory / "kustomization.yaml"
    assert path.is_file(), f"{directory} has no kustomization.yaml"
    return yaml.safe_load(path.read_text())


def iter_dicts(node: Any):
    """Every mapping nested anywhere in a YAML document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from iter_dicts(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_dicts(item)


# --- a small kustomize --------------------------------------------------------------
# Only what deploy/ uses: resources (files and directories), patches (strategic
# merge or JSON 6902, from a file, selected by kind/name/labelSelector),
# namespace and images.

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "patches", "namespace", "images"}
SUPPORTED_TARGET_FIELDS = {"kind", "name", "labelSelector"}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                        "IngressClass", "PriorityClass", "StorageClass"}


class UnsupportedKustomization(Exception):
    pass


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    kustomization = read_kustomization(directory)
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    if unsupported:
        raise UnsupportedKustomization(
            f"{directory}: kustomization fields {sorted(unsupported)} are not supported by "
            "the loader in tests/test_deploy.py; extend it with them")
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        resources += kustomize_build(path) if path.is_dir() else load_docs(path)
    for patch in kustomization.get("patches", []):
        apply_patch(resources, patch, directory)
    if "namespace" in kustomization:
        set_namespace(resources, kustomization["namespace"])
    for image in kustomization.get("images", []):
        set_image(resources, image)
    return resources


def apply_patch(resources: list[dict[str, Any]], patch: dict[str, Any], directory: Path) -> None:
    if set(patch) - {"path", "target"}:
        raise UnsupportedKustomization(f"{directory}: patch fields {sorted(patch)}")
    content = yaml.safe_load((directory / patch["path"]).read_text())
    target = patch.get("target")
    if target is None:
        if not isinstance(content, dict):
            raise UnsupportedKustomization(f"{directory}: a JSON 6902 patch needs a target")
        target = {"kind": content["kind"], "name": content["metadata"]["name"]}
    if set(target) - SUPPORTED_TARGET_FIELDS:
        raise UnsupportedKustomization(f"{directory}: target fields {sorted(target)}")
    matched = [i for i, r in enumerate(resources) if target_matches(target, r)]
    assert matched, f"{directory}: patch {patch['path']} matches no resource ({target})"
    for i in matched:
        if isinstance(content, list):
            resources[i] = json6902(resources[i], content)
        else:
            # The patch's own name only selects when there is no target (as in kustomize).
            body = {k: v for k, v in content.items() if k not in ("apiVersion", "kind")}
            body["metadata"] = {k: v for k, v in body.get("metadata", {}).items()
                                if k not in ("name", "namespace")}
            resources[i] = strategic_merge(resources[i], body)


def target_matches(target: dict[str, Any], resource: dict[str, Any]) -> bool:
    if "kind" in target and resource["kind"] != target["kind"]:
        return False
    if "name" in target and not re.fullmatch(target["name"], resource["metadata"]["name"]):
        return False
    if "labelSelector" in target:
        labels = resource["metadata"].get("labels", {})
        for requirement in target["labelSelector"].split(","):
            key, _, value = requirement.partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
    return True


def strategic_merge(base: Any, patch: Any) -> Any:
    """Maps merge key by key (null deletes), lists of named items merge by
    name (containers, env, volumes, ports), other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(merged.get(key), value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and all(
            isinstance(item, dict) and "name" in item for item in base + patch):
        merged = copy.deepcopy(base)
        for item in patch:
            at = next((i for i, old in enumerate(merged) if old["name"] == item["name"]), None)
            if at is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[at] = strategic_merge(merged[at], item)
        return merged
    return copy.deepcopy(patch)


def json6902(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    document = copy.deepcopy(document)
    for op in operations:
        *parents, last = [part.replace("~1", "/").replace("~0", "~")
                          for part in op["path"].lstrip("/").split("/")]
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op["op"] == "add":
                node.insert(index, op["value"])
            elif op["op"] == "replace":
                node[index] = op["value"]
            elif op["op"] == "remove":
                del node[index]
            else:
                raise UnsupportedKustomization(f"JSON patch op {op['op']}")
        else:
            if op["op"] in ("replace", "remove") and last not in node:
                raise KeyError(f"JSON patch {op['op']} of missing {op['path']}")
            if op["op"] in ("add", "replace"):
                node[last] = op["value"]
            elif op["op"] == "remove":
                del node[last]
            else:
                raise UnsupportedKustomization(f"JSON patch op {op['op']}")
    return document


def set_namespace(resources: list[dict[str, Any]], namespace: str) -> None:
    for resource in resources:
        if resource["kind"] == "Namespace":
            resource["metadata"]["name"] = namespace
        elif resource["kind"] not in CLUSTER_SCOPED_KINDS:
            resource["metadata"]["namespace"] = namespace


def split_image(image: str) -> tuple[str, str]:
    """("registry/name", ":tag" or "@digest" or "")."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, "@" + digest
    if ":" in image.rsplit("/", 1)[-1]:
        name, tag = image.rsplit(":", 1)
        return name, ":" + tag
    return image, ""


def set_image(resources: list[dict[str, Any]], image: dict[str, Any]) -> None:
    for resource in resources:
        for container in all_containers(resource):
            name, suffix = split_image(container["image"])
            if name != image["name"]:
                continue
            if "digest" in image:
                suffix = "@" + image["digest"]
            elif "newTag" in image:
                suffix = ":" + str(image["newTag"])
            container["image"] = image.get("newName", name) + suffix


# --- the rendered resources ------------------------------------------------------------


@functools.cache
def _rendered_json(target: str) -> str:
    return json.dumps(kustomize_build(DEPLOY / target))


def rendered(target: str) -> list[dict[str, Any]]:
    return json.loads(_rendered_json(target))


def of_kind(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind]


def by_name(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in of_kind(resources, kind)}


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    return resource.get("spec", {}).get("template", {}).get("spec", {})


def all_containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(resource)
    return spec.get("initContainers", []) + spec.get("containers", [])


def component(resource: dict[str, Any]) -> str | None:
    return resource["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def service_of(resource: dict[str, Any]) -> str:
    return resource["metadata"]["labels"]["app.kubernetes.io/name"]


# --- the rules, as functions that list what is wrong --------------------------------------


def _effective(container: dict[str, Any], pod: dict[str, Any], key: str) -> Any:
    """A security setting of a container, inherited from the pod when unset."""
    value = container.get("securityContext", {}).get(key)
    return pod.get("securityContext", {}).get(key) if value is None else value


def hardening_problems(deployment: dict[str, Any]) -> list[str]:
    name = deployment["metadata"]["name"]
    pod = pod_spec(deployment)
    problems: list[str] = []
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: automountServiceAccountToken is not false")
    pod_context = pod.get("securityContext", {})
    if pod_context.get("runAsNonRoot") is not True or pod_context.get("runAsUser") != APP_UID:
        problems.append(f"{name}: the pod does not run as non-root uid {APP_UID}")
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            problems.append(f"{name}: {host}")
    tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    containers = all_containers(deployment)
    if not pod.get("containers"):
        problems.append(f"{name}: no containers")
    for c in containers:
        where = f"{name}/{c.get('name')}"
        sc = c.get("securityContext", {})
        if _effective(c, pod, "runAsNonRoot") is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if _effective(c, pod, "runAsUser") != APP_UID:
            problems.append(f"{where}: runAsUser is not {APP_UID}")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []) or sc.get("capabilities", {}).get("add"):
            problems.append(f"{where}: capabilities are not drop [ALL]")
        if (_effective(c, pod, "seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: seccompProfile is not RuntimeDefault")
        resources = c.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(kind, {}):
                    problems.append(f"{where}: no {kind}.{resource}")
        if not any(m["mountPath"] == "/tmp" and m["name"] in tmp_volumes for m in c.get("volumeMounts", [])):
            problems.append(f"{where}: no emptyDir mounted at /tmp")
        refs = {(k, v["name"]) for e in c.get("envFrom", []) for k, v in e.items() if k.endswith("Ref")}
        if not {("configMapRef", "socialzone-config"), ("secretRef", "socialzone-secrets")} <= refs:
            problems.append(f"{where}: does not read socialzone-config and socialzone-secrets")
    return problems


def workload_problems(deployment: dict[str, Any]) -> list[str]:
    """What each API and relay Deployment of a service runs, and its probes."""
    name = deployment["metadata"]["name"]
    service = service_of(deployment)
    pod = pod_spec(deployment)
    problems: list[str] = []
    migrate = [c for c in pod.get("initContainers", []) if c.get("args") == ["migrate", service]]
    if not migrate:
        problems.append(f"{name}: no initContainer running `migrate {service}`")
    if component(deployment) == "relay":
        if deployment["spec"].get("replicas") != 1:
            problems.append(f"{name}: a relay runs exactly 1 replica")
        if deployment["spec"].get("strategy", {}).get("type") != "Recreate":
            problems.append(f"{name}: a relay's strategy is not Recreate")
        if [c.get("args") for c in pod.get("containers", [])] != [["relay", service]]:
            problems.append(f"{name}: does not run only `relay {service}`")
        return problems
    if "replicas" in deployment["spec"]:
        problems.append(f"{name}: replicas is set, but the HPA owns it")
    containers = pod.get("containers", [])
    if [c.get("args") for c in containers] != [["serve", service, "--no-relay"]]:
        problems.append(f"{name}: does not run only `serve {service} --no-relay`")
    for c in containers:
        ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
        if 8000 not in ports:
            problems.append(f"{name}: does not expose port 8000")
        for probe, path in (("startupProbe", f"/{service}/healthz"),
                            ("livenessProbe", f"/{service}/healthz"),
                            ("readinessProbe", f"/{service}/readyz")):
            http = c.get(probe, {}).get("httpGet", {})
            if http.get("path") != path or http.get("port") not in ports:
                problems.append(f"{name}: {probe} is not httpGet {path} on a container port")
    return problems


def validate_strimzi(resource: dict[str, Any]) -> None:
    jsonschema.validate(resource, KAFKA_TOPIC_SCHEMA)
    spec = resource["spec"]
    assert spec["config"]["min.insync.replicas"] <= spec["replicas"], (
        f"{resource['metadata']['name']}: min.insync.replicas above replicas: no write would succeed")


def topic_name(resource: dict[str, Any]) -> str:
    return resource["spec"].get("topicName", resource["metadata"]["name"])


def hpa_cap(service: str, topics: dict[str, int]) -> int:
    return INGEST_MAX_REPLICAS if service == "ingest" else topics[MAIN_TOPIC[service]]


# --- the files themselves ---------------------------------------------------------------------


def test_every_yaml_file_under_deploy_parses_and_is_used_by_a_kustomization():
    files = yaml_files()
    assert len(files) > 10, "deploy/ holds the base and overlays"
    for path in files:
        assert load_docs(path), f"{path} is empty"
    used = set()
    for directory in kustomization_dirs():
        k = read_kustomization(directory)
        used |= {(directory / r).resolve() for r in k.get("resources", [])}
        used |= {(directory / p["path"]).resolve() for p in k.get("patches", []) if "path" in p}
    orphans = [p.relative_to(ROOT) for p in files
               if p.name != "kustomization.yaml" and p.resolve() not in used]
    assert not orphans, f"YAML files no kustomization applies: {orphans}"


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda d: str(d.relative_to(DEPLOY)))
def test_kustomization_references_exist(directory):
    k = read_kustomization(directory)
    assert k.get("apiVersion", "").startswith("kustomize.config.k8s.io/")
    referenced = list(k.get("resources", [])) + list(k.get("components", []))
    referenced += [p["path"] for p in k.get("patches", []) if "path" in p]
    assert referenced, f"{directory}/kustomization.yaml references nothing"
    for entry in referenced:
        path = directory / entry
        assert path.exists(), f"{directory}/kustomization.yaml: {entry} does not exist"
        if path.is_dir():
            assert (path / "kustomization.yaml").is_file(), f"{path} is not a kustomization"


def test_no_secret_with_values_is_committed_under_deploy():
    for path in yaml_files():
        for doc in load_docs(path):
            for node in iter_dicts(doc):
                if node.get("kind") == "Secret":
                    assert not (node.get("data") or node.get("stringData")), (
                        f"{path}: a Secret with values; secrets come from the cluster (deploy/README.md)")


@pytest.mark.parametrize("target", TARGETS)
def test_config_map_holds_no_secret(target):
    config = by_name(rendered(target), "ConfigMap")["socialzone-config"]
    secret_like = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEYS|ADMIN_KEY|DATABASE_URL")
    leaked = [key for key in config["data"] if secret_like.search(key)]
    assert not leaked, f"secrets belong in socialzone-secrets, not the ConfigMap: {leaked}"


def test_every_secret_the_manifests_read_is_documented():
    readme = (DEPLOY / "README.md").read_text()
    names = set()
    for resource in rendered("overlays/production"):
        for node in iter_dicts(resource):
            for key in ("secretRef", "secretKeyRef"):
                if key in node:
                    names.add(node[key]["name"])
            if "secretName" in node and "emptyDir" not in node:
                names.add(node["secretName"])
    assert {"socialzone-secrets", "socialzone-kafka-ca"} <= names
    for name in names:
        assert f"`{name}`" in readme, f"deploy/README.md does not document the Secret {name}"
    for key in ("SOCIALZONE_DATABASE_URL", "SOCIALZONE_API_KEYS", "SOCIALZONE_ADMIN_KEY",
                "SOCIALZONE_KAFKA__SASL_PASSWORD"):
        assert f"`{key}`" in readme, f"deploy/README.md does not document the key {key}"


# --- rendering and schemas ------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_rendering_matches_kubectl_kustomize(target):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the loader is checked by the other tests only")
    run = subprocess.run([kubectl, "kustomize", str(DEPLOY / target)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr

    def key(r):
        return (r["kind"], r["metadata"].get("namespace", ""), r["metadata"]["name"])

    theirs = {key(r): r for r in yaml.safe_load_all(run.stdout) if r}
    ours = {key(r): r for r in rendered(target)}
    assert sorted(ours) == sorted(theirs)
    for k in ours:
        assert ours[k] == theirs[k], f"{target}: {k} renders differently from kubectl kustomize"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_resources_validate_against_their_schemas(target, version):
    resources = rendered(target)
    assert resources
    for resource in resources:
        what = f"{target}: {resource['kind']}/{resource['metadata']['name']}"
        if resource["apiVersion"].startswith("kafka.strimzi.io/"):
            validate_strimzi(resource)
            continue
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{what} against Kubernetes {version}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{what}: {e.message}")


def test_resource_names_are_unique_per_kind():
    for target in TARGETS:
        keys = [(r["kind"], r["metadata"]["name"]) for r in rendered(target)]
        assert len(keys) == len(set(keys)), f"{target}: duplicate resources"


# --- workloads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_deployment_is_hardened(target):
    deployments = of_kind(rendered(target), "Deployment")
    assert len(deployments) == 2 * len(SERVICES)
    problems = [p for d in deployments for p in hardening_problems(d)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("target", TARGETS)
def test_each_service_has_an_api_deployment_a_relay_and_probes(target):
    deployments = by_name(rendered(target), "Deployment")
    for service in SERVICES:
        assert component(deployments[service]) == "api"
        assert component(deployments[f"{service}-relay"]) == "relay"
    problems = [p for d in deployments.values() for p in workload_problems(d)]
    assert not problems, "\n".join(problems)


# Each mutation breaks one rule on a copy of a real Deployment: the checks
# above must catch it.
MUTATIONS = {
    "root user": lambda d: pod_spec(d)["securityContext"].update(runAsUser=0),
    "writable root fs": lambda d: pod_spec(d)["containers"][0]["securityContext"].update(
        readOnlyRootFilesystem=False),
    "capabilities kept": lambda d: pod_spec(d)["containers"][0]["securityContext"].pop("capabilities"),
    "privilege escalation": lambda d: pod_spec(d)["initContainers"][0]["securityContext"].update(
        allowPrivilegeEscalation=True),
    "no seccomp": lambda d: pod_spec(d)["securityContext"].pop("seccompProfile"),
    "token mounted": lambda d: pod_spec(d).pop("automountServiceAccountToken"),
    "no memory limit": lambda d: pod_spec(d)["containers"][0]["resources"]["limits"].pop("memory"),
    "no /tmp": lambda d: pod_spec(d)["containers"][0].pop("volumeMounts"),
    "no liveness": lambda d: pod_spec(d)["containers"][0].pop("livenessProbe"),
    "readiness on healthz": lambda d: pod_spec(d)["containers"][0]["readinessProbe"]["httpGet"].update(
        path="/care/healthz"),
    "another service's path": lambda d: pod_spec(d)["containers"][0]["startupProbe"]["httpGet"].update(
        path="/sales/healthz"),
    "no migrate": lambda d: pod_spec(d).pop("initContainers"),
    "fixed replicas": lambda d: d["spec"].update(replicas=3),
}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=list(MUTATIONS))
def test_the_deployment_checks_catch_a_broken_rule(mutation):
    deployment = copy.deepcopy(by_name(rendered("base"), "Deployment")["care"])
    assert hardening_problems(deployment) + workload_problems(deployment) == []
    MUTATIONS[mutation](deployment)
    assert hardening_problems(deployment) + workload_problems(deployment)


def test_the_relay_checks_catch_a_scaled_or_rolling_relay():
    relay = by_name(rendered("base"), "Deployment")["care-relay"]
    assert workload_problems(relay) == []
    scaled = copy.deepcopy(relay)
    scaled["spec"]["replicas"] = 2
    rolling = copy.deepcopy(relay)
    rolling["spec"]["strategy"] = {"type": "RollingUpdate"}
    assert workload_problems(scaled) and workload_problems(rolling)


@pytest.mark.parametrize("target", TARGETS)
def test_services_and_pdbs_select_the_api_pods(target):
    resources = rendered(target)
    deployments = by_name(resources, "Deployment")
    services = by_name(resources, "Service")
    pdbs = by_name(resources, "PodDisruptionBudget")
    for name in SERVICES:
        pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        ports = {p["name"] for c in pod_spec(deployments[name])["containers"] for p in c.get("ports", [])}
        selector = services[name]["spec"]["selector"]
        assert selector.items() <= pod_labels.items()
        assert services[name]["spec"]["ports"][0]["targetPort"] in ports
        assert pdbs[name]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert pdbs[name]["spec"]["minAvailable"] == (0 if target == "overlays/dev" else 1)


def test_images_are_local_in_dev_and_pinned_in_production():
    def images(target):
        return {c["image"] for d in of_kind(rendered(target), "Deployment") for c in all_containers(d)}

    assert images("base") == {"socialzone"}
    assert images("overlays/dev") == {"socialzone:dev"}
    (production,) = images("overlays/production")
    tag = production.rsplit(":", 1)[-1] if "@" not in production else None
    assert "/" in production, "production pulls from a registry"
    assert "@sha256:" in production or (tag and tag != "latest" and re.fullmatch(r"[\w.-]+", tag)), production


# --- autoscaling and topics ------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_topic_and_its_dlq_is_a_kafka_topic_with_its_partitions(target):
    topics = {topic_name(t): t for t in of_kind(rendered(target), "KafkaTopic")}
    expected = {**TOPIC_PARTITIONS, **{f"{t}.dlq": p for t, p in TOPIC_PARTITIONS.items()}}
    assert sorted(topics) == sorted(expected)
    for name, partitions in expected.items():
        spec = topics[name]["spec"]
        assert spec["partitions"] == partitions, name
        if target != "overlays/dev":
            assert (spec["replicas"], spec["config"]["min.insync.replicas"]) == (3, 2), name


def test_kafka_topics_match_the_event_catalog():
    from socialzone_common.catalog import TOPICS

    declared = {topic_name(t): t["spec"]["partitions"] for t in of_kind(rendered("base"), "KafkaTopic")}
    for topic in TOPICS.values():
        assert declared.get(topic.name) == topic.partitions, topic.name
        assert declared.get(topic.dlq) == topic.partitions, topic.dlq


def test_the_strimzi_schema_rejects_a_bad_topic():
    topic = copy.deepcopy(of_kind(rendered("base"), "KafkaTopic")[0])
    validate_strimzi(topic)
    for breaks in (lambda t: t["spec"].update(partitions=0),
                   lambda t: t["spec"].update(partition=6),
                   lambda t: t["spec"].update(replicas="3"),
                   lambda t: t["metadata"]["labels"].pop("strimzi.io/cluster"),
                   lambda t: t["spec"]["config"].update({"min.insync.replicas": 4})):
        broken = copy.deepcopy(topic)
        breaks(broken)
        with pytest.raises((jsonschema.ValidationError, AssertionError)):
            validate_strimzi(broken)


@pytest.mark.parametrize("target", TARGETS)
def test_each_hpa_is_capped_at_the_partitions_of_its_main_topic(target):
    resources = rendered(target)
    topics = {topic_name(t): t["spec"]["partitions"] for t in of_kind(resources, "KafkaTopic")}
    hpas = by_name(resources, "HorizontalPodAutoscaler")
    assert sorted(hpas) == sorted(SERVICES)
    for service, hpa in hpas.items():
        spec = hpa["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"] <= hpa_cap(service, topics), service
        if target != "overlays/dev":
            assert spec["minReplicas"] >= 2, f"{service}: one replica is no availability"


def test_base_hpas_use_the_whole_partition_count():
    topics = {topic_name(t): t["spec"]["partitions"] for t in of_kind(rendered("base"), "KafkaTopic")}
    for service, hpa in by_name(rendered("base"), "HorizontalPodAutoscaler").items():
        assert hpa["spec"]["minReplicas"] == 2
        assert hpa["spec"]["maxReplicas"] == hpa_cap(service, topics)


# --- network --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_network_is_default_deny_with_explicit_egress(target):
    policies = of_kind(rendered(target), "NetworkPolicy")
    assert any(p["spec"]["podSelector"] == {}
               and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress")
               for p in policies), "no default-deny NetworkPolicy"

    egress = [rule for p in policies for rule in p["spec"].get("egress", [])]
    for rule in egress:
        assert rule.get("ports"), f"an egress rule without ports allows everything: {rule}"
    allowed = {(port.get("protocol", "TCP"), port["port"]) for rule in egress for port in rule["ports"]}
    for needed in (("UDP", 53), ("TCP", 53), ("TCP", 9092), ("TCP", 9093), ("TCP", 5432), ("TCP", 4318)):
        assert needed in allowed, f"no egress to {needed}"
    def namespace(name):
        return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}

    dns = [rule for rule in egress if {"port": 53, "protocol": "UDP"} in rule["ports"]]
    assert dns and all(rule["to"] == [namespace("kube-system")] for rule in dns)

    sources = [peer for p in policies for rule in p["spec"].get("ingress", []) for peer in rule.get("from", [])]
    assert namespace("ingress-nginx") in sources
    for p in policies:
        for rule in p["spec"].get("ingress", []):
            assert rule.get("from") and rule.get("ports"), f"{p['metadata']['name']}: ingress open to all"


@pytest.mark.parametrize("target", TARGETS)
def test_ingress_routes_each_service_prefix_to_its_service(target):
    resources = rendered(target)
    (ingress,) = of_kind(resources, "Ingress")
    services = by_name(resources, "Service")
    routes = {path["path"]: path for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]}
    assert sorted(routes) == sorted(f"/{s}" for s in SERVICES)
    for service in SERVICES:
        route = routes[f"/{service}"]
        backend = route["backend"]["service"]
        assert route["pathType"] == "Prefix"
        assert backend["name"] == service
        assert backend["port"]["name"] in {p["name"] for p in services[service]["spec"]["ports"]}


def test_production_ingress_has_a_host_and_tls():
    (ingress,) = of_kind(rendered("overlays/production"), "Ingress")
    hosts = {rule.get("host") for rule in ingress["spec"]["rules"]}
    assert None not in hosts
    assert hosts <= {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}


def test_overlay_namespaces_enforce_the_restricted_pod_security_standard():
    for target in ("overlays/dev", "overlays/production"):
        resources = rendered(target)
        (namespace,) = of_kind(resources, "Namespace")
        labels = namespace["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        for r in resources:
            if r["kind"] != "Namespace":
                assert r["metadata"]["namespace"] == namespace["metadata"]["name"]


# --- the loader itself ---------------------------------------------------------------------------


def test_loader_applies_strategic_merge_and_json_patches():
    base = {"spec": {"replicas": 2, "containers": [{"name": "a", "image": "x", "args": ["1"]},
                                                   {"name": "b", "image": "y"}]}}
    merged = strategic_merge(base, {"spec": {"containers": [{"name": "b", "image": "z"}], "replicas": None}})
    assert merged == {"spec": {"containers": [{"name": "a", "image": "x", "args": ["1"]},
                                              {"name": "b", "image": "z"}]}}
    patched = json6902(base, [{"op": "replace", "path": "/spec/replicas", "value": 1},
                              {"op": "add", "path": "/spec/containers/0/args/-", "value": "2"},
                              {"op": "add", "path": "/spec/a~1b", "value": True}])
    assert patched["spec"]["replicas"] == 1
    assert patched["spec"]["containers"][0]["args"] == ["1", "2"]
    assert patched["spec"]["a/b"] is True
    assert base["spec"]["replicas"] == 2, "patches work on copies"
    with pytest.raises(KeyError):
        json6902(base, [{"op": "replace", "path": "/spec/missing", "value": 1}])


def test_loader_refuses_kustomize_features_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(UnsupportedKustomization):
        kustomize_build(tmp_path)


# --- the image ---------------------------------------------------------------------------------------


def test_dockerfile_builds_a_wheel_and_runs_as_the_manifests_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [line.strip() for line in dockerfile.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    assert "python:3.11-slim" in dockerfile
    assert sum(line.startswith("FROM ") for line in instructions) >= 2, "multi-stage build"
    assert any("pip wheel" in line for line in instructions)
    assert f"USER {APP_UID}:{APP_UID}" in instructions or f"USER {APP_UID}" in instructions
    assert 'ENTRYPOINT ["socialzone"]' in instructions
    assert 'CMD ["run"]' in instructions
    assert "EXPOSE 8000" in instructions
    secret_like = re.compile(r"^(ENV|ARG)\b.*(PASSWORD|SECRET|TOKEN|API_KEYS|ADMIN_KEY|DATABASE_URL)", re.I)
    assert not [line for line in instructions if secret_like.search(line)]
    dockerignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    assert dockerignore[0] == "*", ".dockerignore allow-lists what the build needs"


def test_the_wheel_the_image_installs_holds_every_python_package(tmp_path):
    # The image installs a built wheel, not the source tree: a package missing from
    # it imports in the editable dev install but not in the container.
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    [wheel] = tmp_path.glob("socialzone-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    roots = {"socialzone_common": "libs/common", "socialzone_ingest": "services/ingest",
             "socialzone_identity": "services/identity", "socialzone_care": "services/customer-care",
             "socialzone_marketing": "services/marketing", "socialzone_sales": "services/sales",
             "socialzone_insights": "services/insights"}
    missing = []
    for package, folder in roots.items():
        for source in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" in source.parts:
                continue
            name = "/".join((package, *source.relative_to(ROOT / folder).parts))
            if name not in names:
                missing.append(name)
    assert not missing, f"not in the wheel: {missing}"
