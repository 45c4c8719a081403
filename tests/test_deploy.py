"""Containers and Kubernetes: lint the Dockerfiles, validate the manifests offline, and check that
the image, the manifests and the server agree (ports, user, settings, dependencies)."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from server.settings import ENV_PREFIX, Settings

from .conftest import ROOT

DOCKERFILES = ["Dockerfile", "Dockerfile.cuda"]
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = ["deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"]
# Oldest Kubernetes with GA gRPC probes, and the newest schema kubernetes-validate ships.
K8S_VERSIONS = ["1.27.0", "latest"]
RUNTIME_PACKAGES = {"server", "client", "modelspec", "rnnserve"}  # first-party, in the image
REQUIREMENTS = {
    "Dockerfile": "deploy/requirements-server.txt",
    "Dockerfile.cuda": "deploy/requirements-cuda.txt",
}
SETTINGS_ENV = {ENV_PREFIX + f.name.upper() for f in fields(Settings)}


def _venv_tool(name: str) -> str:
    tool = Path(sys.executable).parent / name
    if not tool.exists():
        pytest.fail(f"{tool} is missing: run make install (it is in the dev extra)")
    return str(tool)


@dataclass
class Dockerfile:
    """The parts of a Dockerfile these tests compare: the final stage's settings, every COPY."""

    env: dict[str, str] = field(default_factory=dict)
    expose: list[int] = field(default_factory=list)
    user: str = ""
    copies: list[str] = field(default_factory=list)  # build-context sources
    healthcheck: str = ""
    entrypoint: list[str] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)


def parse_dockerfile(name: str) -> Dockerfile:
    """Join continuation lines, drop comments; keep the final stage's ENV/EXPOSE/USER."""
    text = (ROOT / name).read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    df = Dockerfile()
    for line in joined.splitlines():
        if not line.strip():
            continue
        word, _, rest = line.strip().partition(" ")
        word = word.upper()
        if word == "FROM":
            df.env, df.expose, df.user = {}, [], ""
        elif word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            df.args[key] = value
        elif word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                df.env[key] = value
        elif word == "EXPOSE":
            df.expose = [int(p.split("/")[0]) for p in rest.split()]
        elif word == "USER":
            df.user = rest.strip()
        elif word == "COPY" and "--from=" not in rest:
            df.copies += shlex.split(rest)[:-1]
        elif word == "HEALTHCHECK":
            df.healthcheck = rest
        elif word == "ENTRYPOINT":
            df.entrypoint = yaml.safe_load(rest)
    return df


def load_docs(name: str) -> list[dict]:
    """Every YAML document of one manifest file."""
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def by_kind() -> dict[tuple[str, str], dict]:
    """(kind, name) -> resource, over all manifests."""
    out = {}
    for name in MANIFESTS:
        for doc in load_docs(name):
            out[doc["kind"], doc["metadata"]["name"]] = doc
    return out


# --- linters -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_is_clean(dockerfile):
    out = subprocess.run(
        [_venv_tool("hadolint"), "--no-color", dockerfile],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("manifest", MANIFESTS)
def test_manifest_validates_offline(manifest, version):
    import kubernetes_validate

    version = kubernetes_validate.latest_version() if version == "latest" else version
    docs = load_docs(manifest)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_kubernetes_validate_catches_a_typo():
    import kubernetes_validate

    deployment = load_docs("deployment.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grcp"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="grcp"):
        kubernetes_validate.validate(deployment, "1.27.0", strict=True)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(MANIFESTS)


def test_shell_scripts_parse():
    for script in ("deploy/build.sh", "tests/image_test.sh"):
        subprocess.run(["bash", "-n", script], cwd=ROOT, check=True)
        assert os.access(ROOT / script, os.X_OK), f"{script} is not executable"


# --- the image -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_configuration(dockerfile):
    df = parse_dockerfile(dockerfile)
    assert df.user == "10001:10001", "non-root, numeric (runAsNonRoot can check it)"
    assert df.entrypoint == ["python", "-m", "server"], "exec form: the server gets SIGTERM"
    assert sorted(df.expose) == sorted(
        [int(df.env["RNNSERVE_PORT"]), int(df.env["RNNSERVE_METRICS_PORT"])]
    )
    assert df.env["RNNSERVE_HOST"] == "0.0.0.0"
    assert df.env["RNNSERVE_MODEL"] == "/app/models/intent.onnx"
    assert df.env["RNNSERVE_DEVICE"] == ("cpu" if dockerfile == "Dockerfile" else "auto")
    unknown = {k for k in df.env if k.startswith(ENV_PREFIX)} - SETTINGS_ENV
    assert not unknown, f"not server settings: {unknown}"
    assert "python -m client health" in df.healthcheck
    assert "${RNNSERVE_PORT}" in df.healthcheck


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_copies_only_the_serving_path(dockerfile):
    df = parse_dockerfile(dockerfile)
    sources = {c.rstrip("/") for c in df.copies}
    # pyproject.toml: the server reads its version from it (ServerMetadata).
    want = {REQUIREMENTS[dockerfile], "models/intent.onnx", "pyproject.toml"} | RUNTIME_PACKAGES
    assert sources == want
    for src in sources:
        assert (ROOT / src).exists(), src


def _first_party_and_third_party_imports() -> tuple[set[str], set[str]]:
    first, third = set(), set()
    for package in RUNTIME_PACKAGES - {"rnnserve"}:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for top in (n.split(".")[0] for n in names):
                    if top in sys.stdlib_module_names or top == "__future__":
                        continue
                    local = (ROOT / top).is_dir() or (ROOT / f"{top}.py").exists()
                    (first if local else third).add(top)
    return first, third


def _pins(path: str) -> dict[str, Requirement]:
    reqs = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            reqs[re.sub(r"[-_.]+", "-", req.name).lower()] = req
    return reqs


def test_serving_code_imports_only_what_the_image_holds():
    first, third = _first_party_and_third_party_imports()
    assert first <= RUNTIME_PACKAGES, f"the serving path imports {first - RUNTIME_PACKAGES}"
    dists = importlib.metadata.packages_distributions()
    pins = _pins(REQUIREMENTS["Dockerfile"])
    for module in sorted(third):
        names = {re.sub(r"[-_.]+", "-", d).lower() for d in dists.get(module, [])}
        assert names & pins.keys(), f"{module} ({names}) is not in deploy/requirements-server.txt"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_requirements_are_pinned_and_satisfy_pyproject(dockerfile):
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for r in project["optional-dependencies"]["server"]]
    pins = _pins(REQUIREMENTS[dockerfile])
    for req in pins.values():
        assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", req
    assert "torch" not in pins
    for req in wanted:
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if dockerfile == "Dockerfile.cuda" and name == "onnxruntime":
            name = "onnxruntime-gpu"
        assert name in pins, f"{req} from pyproject.toml is not in {REQUIREMENTS[dockerfile]}"
        version = next(iter(pins[name].specifier)).version
        assert req.specifier.contains(version), f"{name}=={version} does not satisfy {req}"


def _dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").strip("/")
        rx = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        if any(re.fullmatch(rx, c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_admits_the_sources_and_keeps_the_rest_out():
    for dockerfile in DOCKERFILES:
        for src in parse_dockerfile(dockerfile).copies:
            for path in [src.rstrip("/")] + [
                str(p.relative_to(ROOT)) for p in (ROOT / src).rglob("*.py")
            ]:
                assert not _dockerignore_excludes(path), f"{path} is excluded from the context"
    for path in [
        ".venv/bin/python",
        ".git/HEAD",
        "export/train.py",
        "tests/test_deploy.py",
        "models/intent.pt",
        "models/intent.int8.onnx",
        "build/x",
        "server/__pycache__/app.cpython-311.pyc",
        "Dockerfile",
    ]:
        assert _dockerignore_excludes(path), f"{path} would be sent to the build"


# --- Kubernetes ----------------------------------------------------------------------------------


def _container() -> dict:
    return by_kind()["Deployment", "rnnserve"]["spec"]["template"]["spec"]["containers"][0]


def test_deployment_probes_security_and_drain():
    res = by_kind()
    deployment = res["Deployment", "rnnserve"]
    pod = deployment["spec"]["template"]["spec"]
    container = _container()
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    derived = {e["name"]: e["valueFrom"] for e in container["env"] if "valueFrom" in e}
    names = set(env) | set(derived)
    assert names <= SETTINGS_ENV, f"not server settings: {names - SETTINGS_ENV}"
    # One worker per CPU of the limit, each with one onnxruntime call in flight.
    workers = derived["RNNSERVE_WORKERS"]["resourceFieldRef"]
    assert workers["resource"] == "limits.cpu" and workers["containerName"] == container["name"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "grpc": int(env["RNNSERVE_PORT"]),
        "metrics": int(env["RNNSERVE_METRICS_PORT"]),
    }
    image = parse_dockerfile("Dockerfile")
    assert sorted(ports.values()) == sorted(image.expose)

    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], f"{probe}: native gRPC probe"
    assert pod["securityContext"]["runAsNonRoot"] is True
    uid, gid = (int(x) for x in image.user.split(":"))
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][kind].keys()
    assert int(env["RNNSERVE_INFERENCE_THREADS"]) == 1  # x workers = the CPU limit

    # SIGKILL must never cut the drain short: preStop sleep + drain < grace period.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    budget = float(pre_stop[1]) + float(env["RNNSERVE_DRAIN_SECONDS"])
    assert budget < pod["terminationGracePeriodSeconds"]

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]


def test_services_hpa_and_pdb_point_at_the_deployment():
    res = by_kind()
    labels = res["Deployment", "rnnserve"]["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in _container()["ports"]}
    service, headless = res["Service", "rnnserve"], res["Service", "rnnserve-headless"]
    for svc in (service, headless):
        assert svc["spec"]["selector"].items() <= labels.items()
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}
    assert headless["spec"]["clusterIP"] == "None", "DNS lists every pod: client round robin"
    assert next(p for p in service["spec"]["ports"] if p["name"] == "grpc")["appProtocol"] == "grpc"

    hpa = res["HorizontalPodAutoscaler", "rnnserve"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "rnnserve",
    }
    assert 1 < hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pdb = res["PodDisruptionBudget", "rnnserve"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


# --- the real thing (make image-test) ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.image
def test_image_builds_runs_serves_and_drains(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("buildah with vfs storage and chroot isolation needs root")
    out = subprocess.run(
        ["bash", "tests/image_test.sh"],
        cwd=ROOT,
        env={**os.environ, "PY": sys.executable, "IMAGE": "localhost/rnnserve:pytest"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "[image-test] PASS" in out.stdout
