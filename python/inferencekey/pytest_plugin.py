"""pytest plugin: an in-process InferenceKey platform for your own tests.

Installed with the package and loaded automatically by pytest (entry point
``pytest11``). It adds one fixture, :func:`inferencekey_platform`.

Example::

    from inferencekey.sync import DataClient, ManagementClient, WorkloadSpec

    def test_my_summariser(inferencekey_platform):
        p = inferencekey_platform
        mgmt = ManagementClient(base_url=p.base_url, project=p.project, sdk_token=p.sdk_token)
        ref = mgmt.ensure(WorkloadSpec(name="Bot", slug="bot", backend="vllm", model="m"))
        data = DataClient(base_url=p.base_url, project=p.project, api_key=p.api_key)
        assert data.endpoint(ref.workload_slug).generate_text(prompt="hi").text

Importing this module costs nothing: the SDK is imported only when a test asks for
the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from inferencekey.local import LocalPlatform


@pytest.fixture
def inferencekey_platform() -> Iterator[LocalPlatform]:
    """A started local platform with instant readiness, one per test.

    Function-scoped on purpose: every test gets an empty platform with its own port,
    project and tokens, so workloads created by one test never leak into another.
    Starting one takes milliseconds. Use ``base_url``, ``project``, ``sdk_token``,
    ``api_key`` and ``read_only_token`` to build clients. The platform stops after
    the test, closing any connection still open.
    """
    from inferencekey.local import LocalPlatform

    with LocalPlatform(readiness="instant") as platform:
        yield platform
