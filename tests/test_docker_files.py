"""The Docker image and compose file reference only what exists, and run what CI tests.

This machine has no Docker engine: these checks read the files the way Docker would."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_dockerfile_is_multi_stage_non_root_and_checks_health() -> None:
    steps = _instructions((DOCKER / "Dockerfile").read_text())
    froms = [arg for op, arg in steps if op == "FROM"]
    assert len(froms) == 2 and all(f.startswith("python:3.11-slim") for f in froms)
    for op, arg in steps:
        if op == "COPY" and not arg.startswith("--from"):
            *sources, _ = arg.split()
            for source in sources:
                assert (REPO / source).exists(), source
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    [health] = [arg for op, arg in steps if op == "HEALTHCHECK"]
    assert "/healthz" in health and "8080" in health
    assert ("EXPOSE", "8080 3000 8443") in steps


def test_the_lock_pins_every_dependency_at_the_version_pyproject_names() -> None:
    locked = {}
    for line in (DOCKER / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            locked[name.lower().replace("_", "-")] = version
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        spec = requirement.split(";")[0].split("#")[0].strip()
        name = re.split(r"[<>=\[]", spec, maxsplit=1)[0].strip().lower().replace("_", "-")
        assert name in locked, f"{name} missing from docker/requirements.lock"
        if "==" in spec:
            assert locked[name] == spec.split("==", 1)[1].strip(), name


def test_compose_runs_threadline_on_postgres_and_redis_from_files_that_exist() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) >= {"db", "redis", "threadline"}
    app = services["threadline"]
    context = (DOCKER / app["build"]["context"]).resolve()
    assert context == REPO and (context / app["build"]["dockerfile"]).is_file()
    assert app["env_file"] == "../.env" and (REPO / ".env.example").is_file()
    assert app["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert app["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert {"db", "redis"} <= set(app["depends_on"])
    assert "8080:8080" in app["ports"]
    for name in ("db", "redis"):
        assert services[name]["healthcheck"]["test"]
