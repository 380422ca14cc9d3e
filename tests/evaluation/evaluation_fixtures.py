"""Fixtures shared by the tests/evaluation/test_evaluation*.py modules (imported by name into each module)."""

from __future__ import annotations



