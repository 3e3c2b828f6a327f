"""Errors of the reasoning step. Reasons are readable, name leads and numbers, never patient data."""
from __future__ import annotations


class ReasonerError(Exception):
    """Base of the reasoner's errors; `code` is short and stable (for metrics), `reason` is for people."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ReasonerInputError(ReasonerError, ValueError):
    """The record (or array) cannot be turned into what ECG-R1 expects; nothing was sent to the model."""

    def __init__(self, reason: str, code: str = "input") -> None:
        super().__init__(reason, code)


class ReasonerUnavailable(ReasonerError):
    """The model could not answer: backend missing, server down, HTTP error, unreadable response."""

    def __init__(self, reason: str, code: str = "unavailable") -> None:
        super().__init__(reason, code)


class ReasonerTimeout(ReasonerUnavailable):
    """No answer within the time allowed."""

    def __init__(self, reason: str, code: str = "timeout") -> None:
        super().__init__(reason, code)
