"""Both images: exactly their lists at the pinned versions, every recorded file, and their sizes.

Each image installs its list (images/agent.txt, images/collector.txt) with ``--no-deps``; the
declared dependencies it never imports are left out on purpose (images/lock.py, ``LEFT_OUT``).
The sizes are the targets of issue 15, on the Debian runtime base: docs/benchmarks.md says what
dominates each image.
"""

from __future__ import annotations

import json
from importlib import metadata

import pytest
from packaging.utils import canonicalize_name

from images.build import Buildah, Built
from images.lock import IMAGES, LEFT_OUT, project_requirements, read_pins, runtime_pins
from tests.support.images import Container

# Uncompressed, every layer counted (the runtime base's too), as `docker images` shows them.
TARGETS_MB = {"agent": 150, "collector": 200}
COMPONENTS = sorted(IMAGES)


def _site_packages(box: Container) -> str:
    (site,) = (box.root / "opt/venv/lib").glob("python3.*/site-packages")
    return str(site)


@pytest.mark.parametrize("component", COMPONENTS)
def test_image_installs_exactly_its_list_at_the_pinned_versions(
    request: pytest.FixtureRequest, component: str
) -> None:
    box: Container = request.getfixturevalue(f"{component}_box")
    listed = {key: pin.version for key, pin in read_pins(IMAGES[component]).items()}

    installed = json.loads(
        box.python(
            "import importlib.metadata as md, json, re; print(json.dumps({"
            "re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version "
            "for d in md.distributions()}))"
        )
    )

    assert installed.pop("iot-usage-metering") == "0.1.0"
    assert installed == listed
    assert not {canonicalize_name(name) for name in LEFT_OUT[component]} & installed.keys()


@pytest.mark.parametrize("component", COMPONENTS)
def test_image_meets_every_requirement_but_those_it_leaves_out(
    request: pytest.FixtureRequest, component: str
) -> None:
    """The image's own metadata, walked from its extra: every requirement installed at a
    version it allows, except the left-out ones; nothing installed that the walk does not reach.
    """
    box: Container = request.getfixturevalue(f"{component}_box")
    site = _site_packages(box)

    def in_image(name: str) -> metadata.Distribution:
        for dist in metadata.distributions(name=name, path=[site]):
            return dist
        raise metadata.PackageNotFoundError(name)

    reached = runtime_pins(project_requirements([component]), LEFT_OUT[component], in_image)
    installed = {
        canonicalize_name(dist.metadata["Name"]) for dist in metadata.distributions(path=[site])
    }

    assert installed - {"iot-usage-metering"} == reached.keys()


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_file_a_distribution_records_is_in_the_image(
    request: pytest.FixtureRequest, component: str
) -> None:
    box: Container = request.getfixturevalue(f"{component}_box")
    site = _site_packages(box)

    missing = [
        f"{dist.metadata['Name']}: {path}"
        for dist in metadata.distributions(path=[site])
        for path in dist.files or []
        if not dist.locate_file(path).exists()
    ]

    assert missing == []


@pytest.mark.parametrize("component", COMPONENTS)
def test_image_meets_its_size_target(buildah: Buildah, built: Built, component: str) -> None:
    size_mb = buildah.image_size(built.images[component]) / 1_000_000

    assert size_mb <= TARGETS_MB[component], f"{component} image: {size_mb:.1f} MB"
