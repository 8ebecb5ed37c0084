"""Where a suite's retrieved passages come from: the hook through which the retrieval stage fills them.

A prompt with ``retrieval: {config, into}`` receives passages in its ``into``
input. A case that gives them keeps them (a fixture); for the others, a
``PassageSource`` (``promptops.retrieval.evalcases.RetrievedPassages``) runs the
retrieval config of the same ref and hands back the suite with those passages
in the cases' vars, and what retrieval did. The caller passes one in
``EvalOptions.passages``: evals does not import the retrieval stage, which
itself calls models through the eval runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from promptops.model.evals import Attempt, Failure, RetrievalRun
from promptops.specs import EvalSuiteSpec

if TYPE_CHECKING:
    from promptops.config import Workspace
    from promptops.evals.runner import RunSettings, SpendBudget
    from promptops.resultcache import ResultCache


@dataclass(frozen=True)
class Filled:
    suite: EvalSuiteSpec  # its cases with retrieved passages where they gave none
    retrieval: RetrievalRun | None  # None: nothing was retrieved
    # why passages could not be retrieved (its cases then do not render), or cases the judge could not grade
    problems: tuple[str, ...] = ()
    # The cases not sent because their passages could not be retrieved: each gets an attempt failing as
    # ``withheld_as`` (the spend cap: the gate within_spend_cap; else the gate retrieved), for ``withheld_reason``.
    withheld: tuple[str, ...] = ()
    withheld_as: Failure = Failure.SPEND_CAP
    withheld_reason: str = ""

    @property
    def withheld_attempt(self) -> Attempt | None:
        """The failed attempt each sample of a withheld case gets (None: no case is withheld)."""
        if not self.withheld:
            return None
        return Attempt(False, 0.0, None, None, None, None, None, (self.withheld_reason,), failure=self.withheld_as)


class PassageSource(Protocol):
    async def fill(self, suite: EvalSuiteSpec, workspace: Workspace, cache: ResultCache, settings: RunSettings,
                   budget: SpendBudget) -> Filled: ...

    def corpus_version(self, workspace: Workspace, config_id: str) -> str | None:
        """A hash of the documents a retrieval config names at this ref (None: it names none)."""
        ...
