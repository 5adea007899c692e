"""Value types of the SDK: workload specs, ensure results, inference results, events.

Enumerations are ``str`` enums whose values are the wire names, and every parameter that
takes one also accepts the plain string (``backend="vllm"`` equals ``Backend.VLLM``).

Results keep the untouched response body and decode it into ``raw`` only when ``raw``
is first read, so a caller that needs just the text pays for no extra dict.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Backend",
    "DriftEntry",
    "EmbedResult",
    "EndpointRef",
    "ExecutionPolicy",
    "OnDrift",
    "ReadinessEvent",
    "RerankItem",
    "RerankResult",
    "TaskType",
    "TextChunk",
    "TextResult",
    "Usage",
    "WorkloadSpec",
]


class _WireEnum(str, enum.Enum):
    """A str enum that prints as its wire value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Backend(_WireEnum):
    """Inference engines known to the platform; a custom backend's slug works too."""

    OLLAMA = "ollama"
    VLLM = "vllm"
    VLLM_OMNI = "vllm-omni"
    SGLANG = "sglang"
    LLAMACPP = "llamacpp"
    STABLEDIFFUSIONCPP = "stablediffusioncpp"


class TaskType(_WireEnum):
    """The modality a workload serves; immutable after creation."""

    TEXT2TEXT = "text2text"
    EMBEDDING = "embedding"
    TEXT2IMAGE = "text2image"
    TEXT2VIDEO = "text2video"
    TEXT2AUDIO = "text2audio"
    IMAGE2IMAGE = "image2image"
    IMAGE2VIDEO = "image2video"
    AUDIO2TEXT = "audio2text"
    OMNI = "omni"
    RERANKER = "reranker"
    CLASSIFICATION = "classification"
    REWARD = "reward"
    FORECAST = "forecast"


class ExecutionPolicy(_WireEnum):
    """How a workload's replicas are run."""

    FIXED = "fixed"
    SCHEDULED = "scheduled"
    AUTOSCALING = "autoscaling"


class OnDrift(_WireEnum):
    """What ``ensure`` does when the live workload differs from the spec.

    - ``RECONCILE`` (default): create when absent, update what drifted.
    - ``FAIL``: create when absent; drift raises ``ValidationError`` and sends nothing.
    - ``DRY_RUN``: send nothing that changes state; the plan comes back with
      ``action == "planned"``.
    - ``WARN``: create when absent; drift is left and reported as a ``DriftWarning``.
    - ``IGNORE``: create when absent; drift is left silently.
    """

    RECONCILE = "reconcile"
    FAIL = "fail"
    DRY_RUN = "dry_run"
    WARN = "warn"
    IGNORE = "ignore"


@dataclass(kw_only=True)
class WorkloadSpec:
    """What a workload should look like, keyed by its ``slug``.

    Optional fields left at ``None`` are "not declared": ``ensure`` leaves the live
    value as it is. ``command`` and ``vllm_version`` are overlaid on ``config``.

    >>> spec = WorkloadSpec(name="Triage bot", slug="triage-bot",
    ...                     model="Qwen/Qwen2.5-7B-Instruct", backend=Backend.VLLM)
    """

    name: str
    slug: str
    model: str
    backend: Backend | str
    task_type: TaskType | str | None = None
    description: str | None = None
    project: str | None = None
    command: str | None = None
    vllm_version: str | None = None
    config: Mapping[str, Any] | None = None
    worker_id: str | None = None
    gpu_resource_id: str | None = None
    execution_policy: ExecutionPolicy | str | None = None
    execution_policy_config: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class DriftEntry:
    """One planned change: the field, its live value and the desired value."""

    field: str
    live: Any
    desired: Any


@dataclass(frozen=True)
class EndpointRef:
    """What ``ensure`` did.

    ``action`` is ``created``, ``unchanged``, ``updated``, ``drift_ignored`` or
    ``planned``; ``plan`` lists the drift (empty when there was none).
    """

    project_slug: str
    workload_slug: str
    action: str = "unchanged"
    plan: tuple[DriftEntry, ...] = ()


@dataclass(frozen=True)
class Usage:
    """Token accounting reported by the server; counts it did not send are 0."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True)
class ReadinessEvent:
    """One event of a workload's readiness stream.

    ``phase`` is ``scheduling``, ``provisioning``, ``bootstrapping``, ``ready`` or
    ``error`` (unknown phases are passed through); ``elapsed_ms`` counts from the
    opening of the current stream connection.
    """

    phase: str
    message: str
    elapsed_ms: int
    step: str | None = None


def _usage(raw: tuple[int, int, int] | None) -> Usage | None:
    return None if raw is None else Usage(*raw)


class _RawBody:
    """The response body, decoded into ``raw`` on first access."""

    __slots__ = ("_body", "_raw")

    _body: bytes
    _raw: Any

    def _init_raw(self, body: bytes) -> None:
        self._body = body
        self._raw = None

    @property
    def raw(self) -> dict[str, Any]:
        """The untouched response (or event payload) as a dict."""
        if self._raw is None:
            import json

            self._raw = json.loads(self._body)
        value: dict[str, Any] = self._raw
        return value

    @property
    def raw_bytes(self) -> bytes:
        """The response (or event payload) exactly as received."""
        return self._body


class TextResult(_RawBody):
    """A chat completion: the first choice's text, the model that served it, why it
    stopped, the token usage (``None`` when the server sent none) and ``raw``."""

    __slots__ = ("finish_reason", "model", "text", "usage")

    def __init__(
        self,
        text: str,
        model: str,
        finish_reason: str | None,
        usage: Usage | None,
        raw: bytes,
    ) -> None:
        self.text = text
        self.model = model
        self.finish_reason = finish_reason
        self.usage = usage
        self._init_raw(raw)

    @classmethod
    def _from_native(cls, t: tuple[str, str, str | None, Any, bytes]) -> TextResult:
        return cls(t[0], t[1], t[2], _usage(t[3]), t[4])

    def __repr__(self) -> str:
        return (
            f"TextResult(text={self.text!r}, model={self.model!r}, "
            f"finish_reason={self.finish_reason!r}, usage={self.usage!r})"
        )

    def __str__(self) -> str:
        return self.text


class TextChunk(_RawBody):
    """One event of a chat stream: the text delta (empty when absent), the finish reason
    on the last content chunk, and ``usage`` on the metadata chunk that some servers send
    before the end."""

    __slots__ = ("finish_reason", "text", "usage")

    def __init__(
        self,
        text: str,
        finish_reason: str | None,
        raw: bytes,
        usage: Usage | None = None,
    ) -> None:
        self.text = text
        self.finish_reason = finish_reason
        self.usage = usage
        self._init_raw(raw)

    # Streams build their chunks natively, setting these slots and ``_body``/``_raw``
    # without calling ``__init__`` (one chunk per token makes the constructor matter).

    def __repr__(self) -> str:
        return (
            f"TextChunk(text={self.text!r}, finish_reason={self.finish_reason!r}, "
            f"usage={self.usage!r})"
        )


class EmbedResult(_RawBody):
    """Embedding vectors in input order.

    The vectors live in one contiguous, read-only float32 block of ``len(result) * dim``
    values. ``embeddings`` builds the ``list[list[float]]`` on first access; ``buffer``
    is a zero-copy ``memoryview`` of format ``'f'`` and shape ``(n, dim)``;
    ``numpy.asarray(result)`` wraps the same memory without creating Python floats
    (numpy is optional). On Python 3.12+ ``memoryview(result)`` works too (PEP 688);
    on older versions use ``result.buffer``.
    """

    __slots__ = ("_count", "_embeddings", "_values", "dim", "model", "usage")

    def __init__(
        self,
        values: bytes,
        count: int,
        dim: int,
        model: str,
        usage: Usage | None,
        raw: bytes,
    ) -> None:
        if len(values) != count * dim * 4:
            raise ValueError("the vector block does not match count * dim float32 values")
        self._values = values
        self._count = count
        self.dim = dim
        self.model = model
        self.usage = usage
        self._embeddings: list[list[float]] | None = None
        self._init_raw(raw)

    @classmethod
    def _from_native(cls, t: tuple[int, int, bytes, str, Any, bytes]) -> EmbedResult:
        return cls(t[2], t[0], t[1], t[3], _usage(t[4]), t[5])

    @property
    def buffer(self) -> memoryview[float]:
        """The vectors as a read-only ``memoryview`` of format ``'f'``, shape ``(n, dim)``."""
        view = memoryview(self._values)
        if self._count * self.dim == 0:
            return view.cast("f")
        return view.cast("f", (self._count, self.dim))

    @property
    def embeddings(self) -> list[list[float]]:
        """The vectors as lists of floats, in input order."""
        if self._embeddings is None:
            if self.dim == 0:
                self._embeddings = [[] for _ in range(self._count)]
            else:
                rows: Any = self.buffer.tolist()
                self._embeddings = rows
        return self._embeddings

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[list[float]]:
        return iter(self.embeddings)

    def __getitem__(self, index: int) -> list[float]:
        return self.embeddings[index]

    def __buffer__(self, flags: int, /) -> memoryview[float]:
        return self.buffer

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Any:
        import numpy

        array = numpy.frombuffer(self._values, dtype=numpy.float32).reshape(self._count, self.dim)
        if dtype is not None and numpy.dtype(dtype) != array.dtype:
            if copy is False:
                raise ValueError("a dtype conversion needs a copy")
            return array.astype(dtype)
        return array.copy() if copy else array

    def __repr__(self) -> str:
        return (
            f"EmbedResult(count={self._count}, dim={self.dim}, model={self.model!r}, "
            f"usage={self.usage!r})"
        )


@dataclass(frozen=True)
class RerankItem:
    """One scored document: its index in the documents sent, its relevance score, and
    the document when the server echoed it. Unpacks as ``index, score, document``."""

    index: int
    score: float
    document: Any = None

    @property
    def relevance_score(self) -> float:
        """The wire name of ``score``."""
        return self.score

    def __iter__(self) -> Iterator[Any]:
        return iter((self.index, self.score, self.document))


class RerankResult(_RawBody):
    """Rerank scores, highest first (at most ``top_n`` when it was given)."""

    __slots__ = ("model", "results", "usage")

    def __init__(
        self,
        results: list[RerankItem],
        model: str | None,
        usage: Usage | None,
        raw: bytes,
    ) -> None:
        self.results = results
        self.model = model
        self.usage = usage
        self._init_raw(raw)

    @classmethod
    def _from_native(
        cls, t: tuple[list[tuple[int, float, Any]], str | None, Any, bytes]
    ) -> RerankResult:
        return cls([RerankItem(*item) for item in t[0]], t[1], _usage(t[2]), t[3])

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[RerankItem]:
        return iter(self.results)

    def __getitem__(self, index: int) -> RerankItem:
        return self.results[index]

    def __repr__(self) -> str:
        return f"RerankResult(results={self.results!r}, model={self.model!r}, usage={self.usage!r})"
