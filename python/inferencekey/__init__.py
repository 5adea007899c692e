"""Python SDK for the InferenceKey inference platform.

Async-first clients (every network method is awaitable) with blocking twins of the same
names in :mod:`inferencekey.sync`, and an embedded local platform in
:mod:`inferencekey.local`::

    import asyncio
    from inferencekey import DataClient

    async def main() -> None:
        async with DataClient.from_env() as data:
            result = await data.endpoint("triage-bot").generate_text(prompt="Hello")
            print(result.text)

    asyncio.run(main())

Logging goes to the ``inferencekey`` logger (``inferencekey.local`` for the emulator);
at DEBUG it shows each request's method, path, status and timing, never a secret.
"""

from __future__ import annotations

from ._client import DataClient, Endpoint, ManagementClient, TextStream
from ._native import __version__
from .errors import (
    ApiError,
    AuthError,
    ConfigurationError,
    DriftWarning,
    InferenceKeyError,
    InferenceKeyTimeout,
    PermissionDenied,
    ValidationError,
)
from .types import (
    Backend,
    DriftEntry,
    EmbedResult,
    EndpointRef,
    ExecutionPolicy,
    OnDrift,
    ReadinessEvent,
    RerankItem,
    RerankResult,
    TaskType,
    TextChunk,
    TextResult,
    Usage,
    WorkloadSpec,
)

__all__ = [
    "ApiError",
    "AuthError",
    "Backend",
    "ConfigurationError",
    "DataClient",
    "DriftEntry",
    "DriftWarning",
    "EmbedResult",
    "Endpoint",
    "EndpointRef",
    "ExecutionPolicy",
    "InferenceKeyError",
    "InferenceKeyTimeout",
    "ManagementClient",
    "OnDrift",
    "PermissionDenied",
    "ReadinessEvent",
    "RerankItem",
    "RerankResult",
    "TaskType",
    "TextChunk",
    "TextResult",
    "TextStream",
    "Usage",
    "ValidationError",
    "WorkloadSpec",
    "__version__",
]
