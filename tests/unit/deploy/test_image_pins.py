"""images/constraints.txt and each image's list: what the images install, pinned, and the same as
what the suite tests."""

from __future__ import annotations

import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from images.lock import (
    CONSTRAINTS,
    IMAGES,
    LEFT_OUT,
    PYPROJECT,
    build_requirements,
    image_pins,
    project_requirements,
    read_pins,
)

PINS = read_pins()
PROJECT = tomllib.loads(PYPROJECT.read_text())["project"]


@pytest.mark.parametrize("requirement", [*project_requirements(), *build_requirements()], ids=str)
def test_every_requirement_is_pinned_within_its_range(requirement: Requirement) -> None:
    pin = PINS.get(canonicalize_name(requirement.name))

    assert pin is not None, f"{requirement.name} is not in {CONSTRAINTS.name}: run images/lock.py"
    assert requirement.specifier.contains(pin.version), f"{pin.line()} outside {requirement}"


def test_tested_versions_are_the_pinned_ones() -> None:
    """The venv the suite runs in holds the versions the images ship (`make venv` uses the pins)."""
    drift = {}
    for pin in PINS.values():
        try:
            installed = metadata.version(pin.name)
        except metadata.PackageNotFoundError:
            continue  # the build backend, or a pin for another Python
        if installed != pin.version:
            drift[pin.name] = f"{installed} installed, {pin.version} pinned"

    assert drift == {}, "re-lock with images/lock.py after testing, or reinstall with `make venv`"


@pytest.mark.parametrize("name", ["stripe", "litestar", "uvicorn"])
def test_no_new_major_of_the_billing_path_without_a_change_here(name: str) -> None:
    declared = [
        Requirement(r)
        for r in PROJECT["optional-dependencies"]["collector"]
        if canonicalize_name(Requirement(r).name) == name
    ]
    (requirement,) = declared

    assert any(spec.operator == "<" for spec in requirement.specifier), requirement


def test_license_is_an_spdx_expression() -> None:
    assert PROJECT["license"] == "Apache-2.0"


@pytest.mark.parametrize("extra", sorted(IMAGES))
def test_image_list_is_its_extras_closure_at_the_pins_less_what_it_leaves_out(extra: str) -> None:
    listed = read_pins(IMAGES[extra])

    assert listed == image_pins(extra), f"images/{extra}.txt is out of date: run images/lock.py"
    assert {key: pin.version for key, pin in listed.items()} == {
        key: PINS[key].version for key in listed
    }
    assert not {canonicalize_name(name) for name in LEFT_OUT[extra]} & listed.keys()


def test_agent_list_leaves_out_aiohttp_dateparser_and_every_collector_library() -> None:
    agent = read_pins(IMAGES["agent"]).keys()

    assert {"kubernetes", "prometheus-api-client", "requests", "pyyaml"} <= agent
    assert not {"aiohttp", "yarl", "multidict", "frozenlist", "dateparser", "regex", "pytz"} & agent
    assert not {"litestar", "sqlalchemy", "stripe", "alembic", "asyncpg", "uvicorn"} & agent


def test_collector_list_leaves_out_litestars_command_line() -> None:
    collector = read_pins(IMAGES["collector"]).keys()

    assert {"litestar", "sqlalchemy", "greenlet", "stripe", "alembic", "mako"} <= collector
    # litestar builds the OpenAPI examples of every ResponseSpec with polyfactory and Faker.
    assert {"polyfactory", "faker"} <= collector
    assert not {"rich", "rich-click", "pygments", "markdown-it-py"} & collector
    assert not {"kubernetes", "prometheus-api-client"} & collector
