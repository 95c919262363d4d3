"""BackendSpec: how to build checkpointers of one backend that share one store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from agents_persist import Checkpointer, from_url


@dataclass(frozen=True)
class ContractSpec:
    """One entry of the contract suite, declared by a fixture module as ``CONTRACT_SPECS``.

    ``name`` is the test ID and names the session fixture ``<name>_spec``;
    ``backend`` is the registered backend it exercises; ``shared`` says
    whether instances (and processes) built from one spec share storage.
    """

    name: str
    backend: str
    shared: bool = True
    #: (processes, threads per process, increments per thread) of the cross-process race.
    process_workload: Tuple[int, int, int] = (4, 4, 25)
    #: Examples of the hypothesis state machine (networked backends pay a round trip per step).
    state_machine_examples: int = 25
    #: Seconds of the ABA soak (tests/contract/test_aba_soak.py).
    soak_seconds: float = 30.0
    #: Writers SIGKILLed mid-save (tests/contract/test_crashes.py; $AGENTS_PERSIST_TEST_CRASH_KILLS overrides).
    crash_kills: int = 50
    #: Seconds of the mixed-operation soak (tests/contract/test_soak.py; $AGENTS_PERSIST_TEST_SOAK_SECONDS overrides).
    mixed_soak_seconds: float = 30.0
    #: Modules of tests/contract/ this entry runs (``("test_crud", "test_concurrency")``); None: all of them.
    #: The others are deselected (reported as such by pytest), never skipped silently.
    modules: Optional[Tuple[str, ...]] = None


@dataclass
class BackendSpec:
    """A picklable recipe: ``from_url(url, **options)`` builds a checkpointer on the test's store.

    ``factory`` overrides the URL for backends that cannot be shared by URL
    (memory); such specs are never sent to other processes.
    """

    name: str
    url: str
    options: Dict[str, Any] = field(default_factory=dict)
    factory: Optional[Callable[..., Checkpointer]] = None

    def build(self, **overrides: Any) -> Checkpointer:
        """A new checkpointer; ``overrides`` replace options (``ttl=...``)."""
        options = {**self.options, **overrides}
        if self.factory is not None:
            return self.factory(**options)
        return from_url(self.url, **options)
