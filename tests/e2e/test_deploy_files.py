"""The deployment files and docs say only what `rillet` can do.

Every YAML file in deploy/ parses; every `rillet` command line in the compose file, the
Kubernetes manifests and the Dockerfile parses with the real click commands; every
`RILLET_*` variable they (or the docs) set is a field of one of the project's settings
classes; the definitions ConfigMap matches features/definitions; and docs/ plus README.md
have no broken relative links or anchors.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from pydantic_settings import BaseSettings
from ruamel.yaml import YAML

from serving.cli.main import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *DEPLOY.rglob("*.md")])
ENV_NAME = re.compile(r"\bRILLET_[A-Z0-9_]+\b")
SHELL_VAR = re.compile(r"\$\(\([^)]*\)\)|\$\{[^}]*\}|\$\([^)]*\)|\$[A-Za-z_][A-Za-z0-9_]*")


def load_all(path: Path) -> list[Any]:
    """Every document of a YAML file, parsed by a real (safe) YAML parser."""
    return [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc is not None]


def compose() -> dict[str, Any]:
    docs = load_all(DEPLOY / "docker-compose.yml")
    assert len(docs) == 1
    return dict(docs[0])


def k8s_docs() -> list[dict[str, Any]]:
    """Every Kubernetes object in deploy/k8s (the kustomization file is not one)."""
    return [
        doc
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_all(path)
    ]


def is_rillet_image(image: str | None) -> bool:
    return image is not None and image.split("/")[-1].split(":")[0] == "rillet"


def pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc.get("spec") or {}
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
    if template:
        yield template["spec"]


def rillet_argvs(argv: list[str]) -> list[list[str]]:
    """Argument lists after `rillet` in a container command (exec form or `sh -c`)."""
    if argv[:2] in (["sh", "-c"], ["/bin/sh", "-c"], ["bash", "-c"], ["/bin/bash", "-c"]):
        lexer = shlex.shlex(SHELL_VAR.sub("0", argv[2]), posix=True, punctuation_chars=True)
        found: list[list[str]] = []
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token in (";", "&&", "||", "&", "|"):
                while words and (words[0] in ("exec", "env") or "=" in words[0]):
                    words = words[1:]
                if words and words[0] == "rillet":
                    found.append(words[1:])
                words = []
            else:
                words.append(token)
        return found
    if argv and argv[0] == "rillet":
        return [argv[1:]]
    return [argv]  # exec form after ENTRYPOINT ["rillet"]


def invocations() -> list[tuple[str, list[str]]]:
    """(where, args after `rillet`) for every rillet command line in deploy/."""
    out: list[tuple[str, list[str]]] = []
    for name, service in compose()["services"].items():
        if is_rillet_image(service.get("image")) and "command" in service:
            command = service["command"]
            argv = command if isinstance(command, list) else shlex.split(command)
            out += [(f"docker-compose.yml:{name}", a) for a in rillet_argvs(argv)]
    for doc in k8s_docs():
        for spec in pod_specs(doc):
            for container in spec.get("initContainers", []) + spec["containers"]:
                if not is_rillet_image(container.get("image")):
                    continue
                argv = list(container.get("command", [])) + list(container.get("args", []))
                where = f"k8s {doc['kind']}/{doc['metadata']['name']}:{container['name']}"
                out += [(where, [SHELL_VAR.sub("0", w) for w in a]) for a in rillet_argvs(argv)]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    entry = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile, re.M)
    assert entry and json.loads(entry[-1]) == ["rillet"], "the image's entrypoint is `rillet`"
    for cmd in re.findall(r"^CMD\s+(\[.*\])\s*$", dockerfile, re.M):
        out.append(("Dockerfile CMD", json.loads(cmd)))
    return out


def settings_fields() -> set[str]:
    """`RILLET_*` names of every field of every pydantic-settings class in the project."""
    names: set[str] = set()
    classes: set[type[BaseSettings]] = set()
    for package in ("features", "pipelines", "serving"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            mod = importlib.import_module(info.name)
            for value in vars(mod).values():
                if isinstance(value, type) and issubclass(value, BaseSettings):
                    if value is not BaseSettings:
                        classes.add(value)
    for settings in classes:
        prefix = str(settings.model_config.get("env_prefix", "")).upper()
        for field_name, field in settings.model_fields.items():
            names.add(f"{prefix}{field_name}".upper())
            if isinstance(field.validation_alias, str):
                names.add(field.validation_alias.upper())
            if isinstance(field.alias, str):
                names.add(field.alias.upper())
    return names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path} is empty"
    if "k8s" in path.parts and path.name != "kustomization.yaml":
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path}: {doc}"
            assert doc["metadata"].get("name"), f"{path}: a manifest without a name"


def test_every_rillet_command_line_parses_with_the_real_cli() -> None:
    calls = invocations()
    used = {args[0] for _, args in calls}
    assert {"serve", "run", "apply"} <= used, used
    for where, args in calls:
        name, rest = args[0], args[1:]
        assert name in COMMANDS, f"{where}: `rillet {name}` is not a command"
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        try:
            command.make_context(name, list(rest), resilient_parsing=False)
        except click.ClickException as exc:
            pytest.fail(
                f"{where}: `rillet {' '.join(args)}` does not parse: {exc.format_message()}"
            )


def test_every_rillet_variable_is_a_setting() -> None:
    known = settings_fields()
    assert {"RILLET_REDIS_URL", "RILLET_PROJECT", "RILLET_OFFLINE_ROOT"} <= known
    texts = {p: p.read_text() for p in [*YAML_FILES, DEPLOY / "Dockerfile", *DOCS]}
    unknown = {
        f"{path.relative_to(ROOT)}: {name}"
        for path, text in texts.items()
        for name in ENV_NAME.findall(text)
        if name not in known
    }
    assert not unknown, f"RILLET_* variables no settings class defines: {sorted(unknown)}"


def test_dockerfile_copies_paths_that_exist_in_the_build_context() -> None:
    context = (DEPLOY / compose()["services"]["api"]["build"]["context"]).resolve()
    assert context == ROOT, "the image builds from the repository root"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", dockerfile, re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (context / source).exists(), f"Dockerfile copies missing {source}"


def test_definitions_configmap_matches_the_example_repository() -> None:
    (configmap,) = load_all(DEPLOY / "k8s" / "definitions-configmap.yaml")
    files = {p.name: p.read_text() for p in sorted((ROOT / "features/definitions").glob("*.yaml"))}
    assert configmap["data"] == files, (
        "deploy/k8s/definitions-configmap.yaml is out of date; regenerate it with\n"
        "  kubectl create configmap rillet-definitions --from-file=features/definitions "
        "--dry-run=client -o yaml"
    )


def test_compose_orders_services_by_health() -> None:
    services = compose()["services"]
    assert {"redis", "redpanda", "pipeline", "api"} <= set(services)
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
            else:
                assert condition == "service_completed_successfully", (name, dependency)
                assert services[dependency].get("restart") == "no", dependency
    for name in ("pipeline", "api"):
        conditions = {d: r["condition"] for d, r in services[name]["depends_on"].items()}
        assert conditions["redis"] == "service_healthy"
        assert "healthcheck" in services[name]
    assert services["pipeline"]["environment"]["RILLET_BROKER"] == "kafka"


def test_k8s_probes_volumes_and_roles() -> None:
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in k8s_docs():
        by_kind[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    api = by_kind["Deployment/rillet-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    service = by_kind["Service/rillet-api"]["spec"]
    assert (
        service["selector"] == by_kind["Deployment/rillet-api"]["spec"]["selector"]["matchLabels"]
    )
    pipeline = by_kind["StatefulSet/rillet-pipeline"]["spec"]
    claims = {c["metadata"]["name"] for c in pipeline["volumeClaimTemplates"]}
    container = pipeline["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config = by_kind["ConfigMap/rillet-config"]["data"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    recovery = env.get("RILLET_RECOVERY_DIR") or config.get("RILLET_RECOVERY_DIR")
    assert recovery in {mounts[c] for c in claims if c in mounts}, "recovery dir on a claim"
    volumes = {
        v["name"]: v
        for spec in pod_specs(by_kind["Deployment/rillet-api"])
        for v in spec["volumes"]
    }
    assert volumes["definitions"]["configMap"]["name"] == "rillet-definitions"
    assert "ConfigMap/rillet-definitions" in by_kind
    assert "StatefulSet/rillet-redis" in by_kind
    (kustomization,) = load_all(DEPLOY / "k8s" / "kustomization.yaml")
    manifests = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M)}


def links(path: Path) -> Iterator[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    yield from re.findall(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    yield from re.findall(r"^\[[^\]]+\]:\s*(\S+)", text, re.M)
    yield from re.findall(r"<a\s[^>]*href=\"([^\"]+)\"", text)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_have_no_broken_relative_links(doc: Path) -> None:
    broken = []
    for target in links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        if not resolved.exists():
            broken.append(f"{target} (no {os.path.relpath(resolved, ROOT)})")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{target} (no heading #{fragment} in {resolved.name})")
    assert not broken, f"{doc.relative_to(ROOT)} has broken links: {broken}"
