"""The validation error of canonical events, in a module of its own.

`streams.events` may be compiled (setup.py); an interpreted subclass of a compiled exception
class is not allowed, and the gateway subclasses this one (`Untranslatable`).
"""

from __future__ import annotations


class InvalidEvent(ValueError):
    """A canonical event that breaks the contract; `field` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
