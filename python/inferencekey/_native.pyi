# The private native module. Its API is internal: use the `inferencekey` package.
# Network methods return an `Operation`: nothing runs until `start` or `wait`.

from typing import Any, final

__all__ = [
    "Completions",
    "DataClient",
    "Endpoint",
    "LocalPlatform",
    "ManagementClient",
    "Operation",
    "ReadinessFollower",
    "TextStream",
    "__version__",
    "before_exit",
    "set_log_level",
]

__version__: str

_Usage = tuple[int, int, int]
_RawTextResult = tuple[str, str, str | None, _Usage | None, bytes]
_RawChunk = tuple[str, str | None, _Usage | None, bytes]
_RawEmbed = tuple[int, int, bytes, str, _Usage | None, bytes]
_RawRerank = tuple[list[tuple[int, float, Any]], str | None, _Usage | None, bytes]
_RawEvent = tuple[str, str, int, str | None]

def set_log_level(level: int) -> None: ...

@final
class Completions:
    def __new__(cls) -> Completions: ...
    def fileno(self) -> int: ...
    def wake_with(self, event_loop: Any | None) -> None: ...
    def drain(self) -> None: ...
    @property
    def pending(self) -> int: ...
    @property
    def ready(self) -> bool: ...

@final
class Operation:
    def start(self, completions: Completions, future: Any) -> None: ...
    def cancel(self) -> None: ...
    def wait(self) -> Any: ...

@final
class ManagementClient:
    def __new__(
        cls,
        *,
        base_url: str | None = None,
        project: str | None = None,
        sdk_token: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        stream_idle_timeout: float | None = None,
        max_retries: int | None = None,
        user_agent: str | None = None,
        user_agent_impl: str | None = None,
        _headers: list[tuple[str, str]] | None = None,
    ) -> ManagementClient: ...
    @property
    def base_url(self) -> str: ...
    @property
    def project(self) -> str | None: ...
    @property
    def sdk_token(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def ensure(
        self, spec: dict[str, Any], on_drift: str, project: str | None = None
    ) -> Operation: ...
    def delete(self, workload_slug: str, project: str | None = None) -> Operation: ...
    def readiness(self, workload_slug: str, project: str | None = None) -> ReadinessFollower: ...

@final
class ReadinessFollower:
    def next(self, timeout: float) -> Operation: ...
    def close(self) -> None: ...

@final
class DataClient:
    def __new__(
        cls,
        *,
        base_url: str | None = None,
        project: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        stream_idle_timeout: float | None = None,
        max_retries: int | None = None,
        user_agent: str | None = None,
        user_agent_impl: str | None = None,
        _headers: list[tuple[str, str]] | None = None,
    ) -> DataClient: ...
    @property
    def base_url(self) -> str: ...
    @property
    def project(self) -> str: ...
    @property
    def api_key(self) -> str | None: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def endpoint(self, workload_slug: str, api_key: str | None = None) -> Endpoint: ...

@final
class Endpoint:
    @property
    def workload_slug(self) -> str: ...
    @property
    def project_slug(self) -> str: ...
    @property
    def api_key(self) -> str: ...
    def generate_text(
        self,
        *,
        prompt: str | None = None,
        messages: list[tuple[str, str | None]] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Operation: ...
    def generate_text_stream(
        self,
        *,
        prompt: str | None = None,
        messages: list[tuple[str, str | None]] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Operation: ...
    def embed(self, inputs: list[str]) -> Operation: ...
    def rerank(self, query: str, documents: list[str], top_n: int | None = None) -> Operation: ...

@final
class TextStream:
    def next_batch(self) -> Operation: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...

@final
class LocalPlatform:
    @staticmethod
    def start(
        *,
        project: str | None = None,
        port: int = 0,
        readiness: str | float | dict[str, float] | None = None,
        keepalive_interval: float | None = None,
        token_rate: float | None = None,
        embedding_dim: int | None = None,
        upstreams: dict[str, str] | None = None,
        upstream_api_keys: dict[str, str] | None = None,
        failing_slugs: list[str] | None = None,
        state_file: str | None = None,
        enable_faults: bool = False,
        run_commands: bool = False,
    ) -> Operation: ...
    @property
    def base_url(self) -> str: ...
    @property
    def project(self) -> str: ...
    @property
    def sdk_token(self) -> str: ...
    @property
    def read_only_token(self) -> str: ...
    @property
    def api_key(self) -> str: ...
    @property
    def running(self) -> bool: ...
    def mint_api_key(self, grants: list[str]) -> str: ...
    def mint_api_key_in(self, project: str, grants: list[str]) -> str: ...
    def mint_sdk_token(self, project: str, scopes: list[str]) -> str: ...
    def add_project(self, name: str) -> tuple[str, str, str, str]: ...
    def revoke(self, token: str) -> bool: ...
    def phase(self, project: str, slug: str) -> tuple[str, str] | None: ...
    def workloads(self) -> list[dict[str, Any]]: ...
    def stop(self) -> Operation: ...

def before_exit() -> None: ...
