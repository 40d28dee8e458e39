"""Fixtures the emulator's own tests share."""

import os

import pytest


@pytest.fixture(scope="session")
def this_run(tmp_path_factory):
    """A directory of this test run that all its xdist workers share (pytest
    removes those of old runs): where a patch's failed search leaves its mark."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
