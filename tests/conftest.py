"""Settings for every layer.

Hypothesis draws the same examples on every run (derandomize): a property test that
passes in a developer's run passes in CI, and a new counterexample comes from a change
to the code or the strategy, never from chance. Widen the search locally with
`--hypothesis-seed` or `HYPOTHESIS_PROFILE=explore`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from entrypoint import scrub

settings.register_profile("repeatable", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", deadline=None, max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def _scrubber_forgets_between_tests() -> Iterator[None]:
    """The scrubber remembers every secret a test's settings held; the next test starts without them."""
    yield
    scrub.forget_all()
