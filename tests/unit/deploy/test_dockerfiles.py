"""Dockerfile.agent and Dockerfile.collector, checked statically.

The images themselves are built and run with buildah in tests/integration/images.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

REPO_ROOT = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
COMPONENTS = {"agent": "collector", "collector": "agent"}
BASE_IMAGE = "python:3.12-slim"


def _parse(component: str) -> list[dict[str, Any]]:
    # dockerfile-parse treats a path not named "Dockerfile" as a directory: pass the file.
    with (REPO_ROOT / f"Dockerfile.{component}").open("rb") as fileobj:
        return DockerfileParser(fileobj=fileobj).structure


def _stages(instructions: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    stages: list[list[dict[str, Any]]] = []
    for instruction in instructions:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _runtime(component: str) -> list[dict[str, Any]]:
    return _stages(_parse(component))[-1]


def _build_arguments(component: str) -> dict[str, str]:
    """The global build arguments and their defaults, in order."""
    arguments = [str(i["value"]) for i in _parse(component) if i["instruction"] == "ARG"]
    return dict(argument.partition("=")[::2] for argument in arguments)


def _values(instructions: list[dict[str, Any]], name: str) -> list[str]:
    return [i["value"] for i in instructions if i["instruction"] == name]


def _install_commands(instructions: list[dict[str, Any]]) -> list[str]:
    return [run for run in _values(instructions, "RUN") if re.search(r"pip\b.*\binstall\b", run)]


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_build_on_base_and_run_on_runtime_base_both_defaulting_to_python_312_slim(
    component: str,
) -> None:
    stages = _stages(_parse(component))

    # RUNTIME_BASE defaults to BASE: `docker build` with no arguments runs on python:3.12-slim,
    # and one --build-arg BASE=... moves both stages, so the venv finds its Python.
    assert _build_arguments(component) == {"BASE": BASE_IMAGE, "RUNTIME_BASE": "${BASE}"}
    assert [stage[0]["value"].split() for stage in stages] == [
        ["${BASE}", "AS", "build"],
        ["${RUNTIME_BASE}", "AS", "runtime"],
    ]
    assert any("pip wheel" in run for run in _values(stages[0], "RUN"))


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_runtime_runs_as_65532_with_an_exec_form_console_script(component: str) -> None:
    runtime = _runtime(component)

    assert _values(runtime, "USER")[-1].split(":")[0] == "65532"
    entrypoint = json.loads(_values(runtime, "ENTRYPOINT")[-1])
    assert isinstance(entrypoint, list)
    assert Path(entrypoint[0]).name == f"usage-{component}"
    assert PYPROJECT["project"]["scripts"][f"usage-{component}"] == f"{component}.cli:main"
    assert Path(entrypoint[0]).parent == Path("/opt/venv/bin")


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_copy_sources_exist(component: str) -> None:
    for instruction in _parse(component):
        if instruction["instruction"] != "COPY" or "--from=" in instruction["value"]:
            continue
        *sources, _destination = shlex.split(instruction["value"])
        for source in sources:
            if source == "wheelhouse/":
                # Made by `images/build.py wheelhouse`, never committed.
                assert "wheelhouse/" in (REPO_ROOT / ".gitignore").read_text().splitlines()
                continue
            assert (REPO_ROOT / source).exists(), f"COPY {source}: no such file"


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_build_stage_installs_exactly_its_own_list_into_a_venv_offline(component: str) -> None:
    build = _stages(_parse(component))[0]
    (install,) = _install_commands(build)
    environment = " ".join(_values(build, "ENV"))

    # The image's list (images/lock.py) with --no-deps: pip adds nothing it does not name.
    assert "--no-deps" in install
    assert f"--requirement images/{component}.txt" in install
    assert "iot_usage_metering-*.whl" in install
    assert not re.search(r"\.whl\)?\"?\[", install), "an extra would bring the declared closure"
    assert component in PYPROJECT["project"]["optional-dependencies"]
    assert COMPONENTS[component] not in install
    assert "/opt/venv" in install
    # No index: every wheel comes from the wheelhouse, at the versions images/constraints.txt pins.
    assert "PIP_NO_INDEX=1" in environment
    assert "PIP_FIND_LINKS=/wheels" in environment
    assert "PIP_CONSTRAINT=/src/images/constraints.txt" in environment
    assert "PIP_NO_CACHE_DIR=1" in environment
    copies = [shlex.split(value) for value in _values(build, "COPY")]
    assert ["wheelhouse/", "/wheels/"] in copies
    assert ["images/constraints.txt", f"images/{component}.txt", "images/"] in copies


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_runtime_copies_only_the_venv_and_its_data_directory_and_runs_nothing(
    component: str,
) -> None:
    runtime = _runtime(component)
    data = f"/var/lib/usage-{component}"

    # No RUN: a runtime base without a shell (images/runtime_base.py) builds too.
    assert _values(runtime, "RUN") == []
    assert _values(runtime, "COPY") == [
        f"--from=build --chown=65532:65532 {data} {data}",
        "--from=build /opt/venv /opt/venv",
    ]
    assert _values(runtime, "WORKDIR") == [data]
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(_values(runtime, "ENV"))


def test_agent_build_removes_the_asyncio_kubernetes_client_and_its_record_lines() -> None:
    build = _stages(_parse("agent"))[0]
    (run,) = _values(build, "RUN")

    assert 'rm -r "$site/kubernetes/aio"' in run
    assert "sed -i '/^kubernetes\\/aio\\//d' \"$site\"/kubernetes-*.dist-info/RECORD" in run
    assert run.index("kubernetes/aio") < run.index("compileall")


def test_collector_wheel_is_built_without_the_stripe_sandbox() -> None:
    build = _stages(_parse("collector"))[0]
    (run,) = _values(build, "RUN")

    assert run.index("rm -rf collector/stripe_sandbox") < run.index("pip wheel")


def test_extras_keep_each_image_free_of_the_others_dependencies() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]

    def names(extra: str) -> set[str]:
        return {re.split(r"[\[<>=!~ ]", req, maxsplit=1)[0].lower() for req in extras[extra]}

    assert "kubernetes" in names("agent")
    assert "kubernetes" not in names("collector")
    assert not {"litestar", "sqlalchemy", "stripe", "asyncpg", "alembic"} & names("agent")


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_no_compilers_caches_or_tests_in_the_image(component: str) -> None:
    text = "\n".join(_values(_parse(component), "RUN"))

    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|clang)\b", text)
    assert "apt-get install" not in text
    assert not any("tests" in copy for copy in _values(_parse(component), "COPY"))


def test_dockerignore_keeps_tests_and_venvs_out_of_the_context() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    assert rules[0] == "**"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "README.md",
        "common",
        "agent",
        "collector",
        "images/constraints.txt",
        "images/agent.txt",
        "images/collector.txt",
        "wheelhouse",
    }
