"""Helpers for the tests that need pytest itself: the gates that skip a test, or fail it under CI, when
what it needs cannot run here. Harnesses that need no pytest live in ``sanpath.testing``."""
