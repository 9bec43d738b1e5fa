from __future__ import annotations

_testing = False


def set_testing(on: bool = True) -> None:
    """Turn off retry back-off sleeps, for users' own test suites."""
    global _testing
    _testing = bool(on)


def is_testing() -> bool:
    return _testing
