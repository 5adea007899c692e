"""Exceptions raised by the SDK.

Every error is an :class:`InferenceKeyError` carrying ``status`` (HTTP status or
``None``), ``code`` (the server's error code, or one the client sets itself such as
``stream_truncated``, ``workload_error`` or ``drift_detected``), ``request_id`` and
``message``. Messages never contain a token or key: credentials appear only in their
redacted form (``ik_live_5c07e1aa…``).

Errors are picklable, so they cross ``multiprocessing`` boundaries intact::

    try:
        await mgmt.ensure(spec)
    except PermissionDenied as e:
        print(e.code)  # "scope_insufficient"
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "AuthError",
    "ConfigurationError",
    "DriftWarning",
    "InferenceKeyError",
    "InferenceKeyTimeout",
    "PermissionDenied",
    "ValidationError",
]


class InferenceKeyError(Exception):
    """Base class of every SDK error."""

    message: str
    status: int | None
    code: str | None
    request_id: str | None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        text = self.message
        if self.status is not None and self.code:
            text += f" (HTTP {self.status}, {self.code})"
        elif self.status is not None:
            text += f" (HTTP {self.status})"
        elif self.code:
            text += f" ({self.code})"
        if self.request_id:
            text += f" [request {self.request_id}]"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status!r}, "
            f"code={self.code!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (type(self), self.message, self.status, self.code, self.request_id),
            self.__dict__.copy(),
        )


def _rebuild(
    cls: type[InferenceKeyError],
    message: str,
    status: int | None,
    code: str | None,
    request_id: str | None,
) -> InferenceKeyError:
    return cls(message, status=status, code=code, request_id=request_id)


class ConfigurationError(InferenceKeyError):
    """Missing token, project or key, or a bad base URL; raised before any request."""


class ValidationError(InferenceKeyError):
    """Bad arguments (checked locally before any request), HTTP 400/422, or drift
    refused by ``OnDrift.FAIL``."""


class AuthError(InferenceKeyError):
    """HTTP 401: the token is missing, unknown or revoked."""


class PermissionDenied(InferenceKeyError):
    """HTTP 403; ``code`` is ``wrong_credential_type``, ``project_scope_mismatch`` or
    ``scope_insufficient``."""


class ApiError(InferenceKeyError):
    """Any other failure: non-2xx status, transport error, malformed response, a stream
    cut short (``code == "stream_truncated"``) or a workload that failed to start
    (``code == "workload_error"``)."""


class InferenceKeyTimeout(ApiError, TimeoutError):
    """A timeout or deadline passed. Also a builtin :class:`TimeoutError`, so
    ``except TimeoutError`` catches it."""


class DriftWarning(UserWarning):
    """Emitted by ``ensure(..., on_drift=OnDrift.WARN)`` when the live workload differs
    from its spec and was left as it is."""
