"""What the simulator does to a request: latency models, fault names, and the fault schedule.

Nothing here touches the network; the server asks a :class:`Behaviour` what to do with each
``POST /v1/messages`` request and then does it.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Behaviour", "Fault", "Latency"]

# z-score of the 99th percentile of the standard normal distribution.
_Z99 = 2.326


class Fault:
    """Names of the faults the simulator can inject (plain strings, usable in scripts and rates).

    ==================  ============================================================================
    ``ok``              a normal answer
    ``rate_limit``      429 ``rate_limit_error`` with ``retry-after``
    ``overloaded``      529 ``overloaded_error``
    ``server_error``    500 ``api_error``
    ``unavailable``     503 ``api_error``
    ``disconnect``      headers and part of the body are sent, then the connection is aborted
    ``stall``           hang ``stall_seconds`` before answering normally
    ``malformed_json``  200 whose body (or one stream event) is not valid JSON
    ``null_content``    200 with ``"content": null``
    ``empty_content``   200 with ``"content": []``
    ``empty_text``      200 with one text block whose text is ``""``
    ``refusal``         200 with ``stop_reason: "refusal"``
    ``stream_error``    stream: ``event: error`` (overloaded) after some deltas; otherwise 529
    ==================  ============================================================================
    """

    OK = "ok"
    RATE_LIMIT = "rate_limit"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    UNAVAILABLE = "unavailable"
    DISCONNECT = "disconnect"
    STALL = "stall"
    MALFORMED_JSON = "malformed_json"
    NULL_CONTENT = "null_content"
    EMPTY_CONTENT = "empty_content"
    EMPTY_TEXT = "empty_text"
    REFUSAL = "refusal"
    STREAM_ERROR = "stream_error"

    ALL: frozenset[str] = frozenset(
        {
            OK,
            RATE_LIMIT,
            OVERLOADED,
            SERVER_ERROR,
            UNAVAILABLE,
            DISCONNECT,
            STALL,
            MALFORMED_JSON,
            NULL_CONTENT,
            EMPTY_CONTENT,
            EMPTY_TEXT,
            REFUSAL,
            STREAM_ERROR,
        }
    )

    @classmethod
    def check(cls, name: str) -> str:
        """Return ``name`` if it is a known fault name; raise ``ValueError`` otherwise."""
        if name not in cls.ALL:
            known = ", ".join(sorted(cls.ALL))
            raise ValueError(f"unknown fault {name!r}; known faults: {known}")
        return name


@dataclass(frozen=True)
class Latency:
    """A latency model: how long the simulated model takes to answer.

    Build one with :meth:`fixed`, :meth:`uniform` or :meth:`lognormal`. A non-streaming answer
    waits one :meth:`sample` before it is sent. A stream waits ``ttft`` (or, if ``ttft`` is not
    given, one sample) before the first text delta, then ``per_token`` seconds per token of each
    following delta.
    """

    kind: str
    a: float
    b: float
    ttft: float | None = None
    per_token: float = 0.0

    @classmethod
    def fixed(
        cls, seconds: float = 0.0, *, ttft: float | None = None, per_token: float = 0.0
    ) -> Latency:
        """Always ``seconds``. Raises ``ValueError`` if any duration is negative."""
        _check_nonnegative(seconds=seconds, ttft=ttft, per_token=per_token)
        return cls("fixed", float(seconds), float(seconds), ttft, float(per_token))

    @classmethod
    def uniform(
        cls, lo: float, hi: float, *, ttft: float | None = None, per_token: float = 0.0
    ) -> Latency:
        """Uniform in ``[lo, hi]``. Raises ``ValueError`` if ``lo > hi`` or any is negative."""
        _check_nonnegative(lo=lo, hi=hi, ttft=ttft, per_token=per_token)
        if lo > hi:
            raise ValueError(f"uniform latency needs lo <= hi, got lo={lo}, hi={hi}")
        return cls("uniform", float(lo), float(hi), ttft, float(per_token))

    @classmethod
    def lognormal(
        cls,
        median: float = 0.2,
        p99: float = 1.0,
        *,
        ttft: float | None = None,
        per_token: float = 0.0,
    ) -> Latency:
        """Log-normal with the given median and 99th percentile (``sigma = ln(p99/median)/2.326``).

        Raises ``ValueError`` unless ``0 < median <= p99``.
        """
        _check_nonnegative(ttft=ttft, per_token=per_token)
        if not 0 < median <= p99:
            raise ValueError(f"lognormal latency needs 0 < median <= p99, got {median}, {p99}")
        return cls("lognormal", float(median), float(p99), ttft, float(per_token))

    @property
    def sigma(self) -> float:
        """The log-normal shape parameter (0 for the other kinds)."""
        if self.kind != "lognormal":
            return 0.0
        return math.log(self.b / self.a) / _Z99

    def sample(self, rng: random.Random) -> float:
        """Draw one latency in seconds from ``rng``."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return rng.lognormvariate(math.log(self.a), self.sigma)

    def first_token(self, rng: random.Random) -> float:
        """Seconds before the first streamed delta: ``ttft`` if given, else one sample."""
        return self.sample(rng) if self.ttft is None else self.ttft

    @property
    def is_zero(self) -> bool:
        """True when no request ever waits (lets the server skip sleeping altogether)."""
        no_wait = self.kind == "fixed" and self.a == 0.0
        return no_wait and not self.ttft and not self.per_token

    @classmethod
    def parse(cls, spec: str) -> Latency:
        """Parse ``fixed:S``, ``uniform:LO,HI`` or ``lognormal:MEDIAN,P99`` (the CLI syntax)."""
        kind, _, args = spec.partition(":")
        try:
            values = [float(v) for v in args.split(",")] if args else []
        except ValueError:
            raise ValueError(f"bad latency {spec!r}: numbers expected after ':'") from None
        if kind == "fixed" and len(values) == 1:
            return cls.fixed(values[0])
        if kind == "uniform" and len(values) == 2:
            return cls.uniform(values[0], values[1])
        if kind == "lognormal" and len(values) == 2:
            return cls.lognormal(values[0], values[1])
        raise ValueError(
            f"bad latency {spec!r}: use fixed:S, uniform:LO,HI or lognormal:MEDIAN,P99"
        )


def _check_nonnegative(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and (value < 0 or math.isnan(value)):
            raise ValueError(f"{name} must be a non-negative number of seconds, got {value}")


def check_fault_rates(rates: Mapping[str, float] | None) -> dict[str, float]:
    """Validate ``{fault: probability}``: known names, each in [0, 1], summing to at most 1."""
    checked: dict[str, float] = {}
    for name, p in (rates or {}).items():
        Fault.check(name)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability of {name!r} must be within [0, 1], got {p}")
        checked[name] = float(p)
    if sum(checked.values()) > 1.0 + 1e-9:
        raise ValueError(f"fault probabilities sum to more than 1: {checked}")
    return checked


class Behaviour:
    """The mutable, thread-safe behaviour of a running simulator.

    The server calls :meth:`next_fault` and :meth:`sample_latency` from its event loop; tests
    call :meth:`set_script` and :meth:`configure` from any thread. Every method takes a short
    internal lock, so a change is seen by the next request that starts after it.
    """

    def __init__(
        self,
        *,
        latency: Latency | None = None,
        script: Iterable[str] | None = None,
        fault_rates: Mapping[str, float] | None = None,
        seed: int = 0,
        stall_seconds: float = 30.0,
        retry_after: float = 1.0,
    ) -> None:
        self._lock = threading.Lock()
        self.latency = latency if latency is not None else Latency.fixed(0.0)
        self._script: deque[str] = deque(Fault.check(f) for f in script or ())
        self._answers: deque[str] = deque()
        self._rates = check_fault_rates(fault_rates)
        self._rng = random.Random(seed)
        self.seed = seed
        _check_nonnegative(stall_seconds=stall_seconds, retry_after=retry_after)
        self.stall_seconds = float(stall_seconds)
        self.retry_after = float(retry_after)

    def set_script(self, script: Iterable[str]) -> None:
        """Replace the pending script. Raises ``ValueError`` on an unknown fault name."""
        checked = deque(Fault.check(f) for f in script)
        with self._lock:
            self._script = checked

    @property
    def script(self) -> list[str]:
        """The faults still to be applied, in order."""
        with self._lock:
            return list(self._script)

    def set_answers(self, answers: Iterable[str]) -> None:
        """Answer the next requests with these texts, verbatim and in order, then as usual.

        Raises ``TypeError`` if an answer is not a ``str`` (nothing is changed then).
        """
        checked = deque(answers)
        for text in checked:
            if not isinstance(text, str):
                raise TypeError(f"a scripted answer must be a str, got {type(text).__name__}")
        with self._lock:
            self._answers = checked

    @property
    def answers(self) -> list[str]:
        """The scripted answers not yet given, in order."""
        with self._lock:
            return list(self._answers)

    def next_answer(self) -> str | None:
        """The next scripted answer (removed from the script), or ``None`` if there is none."""
        with self._lock:
            return self._answers.popleft() if self._answers else None

    def configure(
        self,
        *,
        latency: Latency | None = None,
        fault_rates: Mapping[str, float] | None = None,
        seed: int | None = None,
        stall_seconds: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Change the given settings (``None`` leaves one unchanged). Validates before changing."""
        rates = check_fault_rates(fault_rates) if fault_rates is not None else None
        _check_nonnegative(stall_seconds=stall_seconds, retry_after=retry_after)
        with self._lock:
            if latency is not None:
                self.latency = latency
            if rates is not None:
                self._rates = rates
            if seed is not None:
                self.seed = seed
                self._rng = random.Random(seed)
            if stall_seconds is not None:
                self.stall_seconds = float(stall_seconds)
            if retry_after is not None:
                self.retry_after = float(retry_after)

    def next_fault(self) -> str:
        """The fault for the next request: the script's head if any, else a seeded draw."""
        with self._lock:
            if self._script:
                return self._script.popleft()
            if not self._rates:
                return Fault.OK
            u = self._rng.random()
            total = 0.0
            for name, p in self._rates.items():
                total += p
                if u < total:
                    return name
            return Fault.OK

    def sample_latency(self) -> float:
        """One non-streaming latency draw from the seeded RNG."""
        with self._lock:
            return self.latency.sample(self._rng)

    def sample_first_token(self) -> float:
        """One time-to-first-token draw from the seeded RNG."""
        with self._lock:
            return self.latency.first_token(self._rng)
