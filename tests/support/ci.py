"""What a test does when something it needs is missing: skip locally, fail in CI.

Dependency-free (the standard library and pytest only), so that the black-box e2e suite may
use it without importing the product.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

#: CI sets `CI=true` (as `.ci/run` and most CI services do): there every service must be there.
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip the test (or the module being collected) locally; fail it in CI."""
    if IN_CI:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)
