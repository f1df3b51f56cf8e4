"""The one error type of the HTTP API: a status, a short code and a message that says what was wrong.

Every error response has the body ``{"error": code, "message": message}``.
"""

from __future__ import annotations

from typing import Mapping


class ApiError(Exception):
    """An HTTP error with a JSON body; ``headers`` are added to the response (Retry-After, ...)."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}
