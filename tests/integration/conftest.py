"""Tests that run the real CLI in a subprocess (a LocalCluster each time); fixtures are shared
with the other suites in tests/conftest.py."""

from __future__ import annotations

from tests.conftest import ROOT

__all__ = ["ROOT"]
