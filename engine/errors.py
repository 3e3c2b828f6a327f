"""Errors the engine raises for input it cannot use. Codecs raise subclasses of these too."""


class InvalidRecord(ValueError):
    """The record breaks the docs/SPEC.md §10 contract; `reason` is readable and carries no patient data."""

    def __init__(self, reason: str, code: str = "invalid-record") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
