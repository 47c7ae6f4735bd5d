"""The enforcement floor: a block needs enough confidence, from evidence that may block.

The policy says what the orders cover; the floor says whether this flow's attribution is strong
enough to act on. A block stands only when the attribution's confidence is at least
``confidence`` and at least one evidence kind behind the app (``Attribution.basis``) is in
``evidence``. Otherwise the flow is logged, and its record says so (``rule``
``below-block-confidence`` or ``evidence-cannot-block``, and a reason naming the floor, the weak
evidence and what the policy alone would have done). ``classifier scan`` and ``classifier
gateway`` apply the same floor, so a scan of a capture predicts what the gateway would do.

An answer bound to no DNS query (``dns-unsolicited``) can never support a block, whatever the
configuration: anyone can send one. Nor can a JA4 fingerprint (``ja4``): it names the client's TLS
software, which other apps share and any client can imitate, never the destination.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line imports this module for its vocabulary: it stays import-light
    from .attribute import Attribution
    from .policy import Decision

CONFIDENCE_LEVELS = ("low", "medium", "high")  # weakest first
# Evidence kinds that can give or confirm an app or operator (Attribution.basis).
BASIS_KINDS = (
    "sni",
    "http-host",
    "http-proxy",
    "socks",
    "store",
    "mmtls",
    "dns",
    "cname",
    "dns-query",
    "name-history",
    "dns-unsolicited",
    "prefix",
    "peering",
    "ja4",
)
RULE_BELOW_CONFIDENCE = "below-block-confidence"
RULE_EVIDENCE = "evidence-cannot-block"
FLOOR_RULES = (RULE_BELOW_CONFIDENCE, RULE_EVIDENCE)  # the decision rules the floor writes

NEVER_BLOCKING = frozenset({"dns-unsolicited", "ja4"})
_WHY_NEVER = {
    "dns-unsolicited": "a DNS answer bound to no query may be forged",
    "ja4": "a TLS fingerprint names the client software, not the destination",
}
DEFAULT_CONFIDENCE = "medium"
# Name history (a name the client used for the address earlier) is left out by default: on a shared
# cloud address a later nameless flow may go to anyone's service.
DEFAULT_EVIDENCE: tuple[str, ...] = tuple(
    k for k in BASIS_KINDS if k not in NEVER_BLOCKING and k != "name-history"
)
BLOCKABLE_KINDS: tuple[str, ...] = tuple(k for k in BASIS_KINDS if k not in NEVER_BLOCKING)

_RANK = {level: i for i, level in enumerate(CONFIDENCE_LEVELS)}


def check_evidence(kinds: tuple[str, ...] | list[str]) -> str | None:
    """What is wrong with a list of block evidence kinds (None if nothing)."""
    if not kinds:
        return "needs at least one evidence kind (an empty list would block nothing: use monitor mode)"
    for kind in kinds:
        if kind in NEVER_BLOCKING:
            return f"{kind} can never support a block: {_WHY_NEVER[kind]}"
        if kind not in BASIS_KINDS and kind not in _registered_protocols():
            known = (*BLOCKABLE_KINDS, *(p for p in _registered_protocols() if p not in BASIS_KINDS))
            return f"unknown evidence kind {kind!r} (known: {', '.join(known)})"
    if len(set(kinds)) != len(kinds):
        return "lists an evidence kind twice"
    return None


def _registered_protocols() -> tuple[str, ...]:
    """Ids of the protocols that name an app by their framing: each is an evidence kind too. A
    protocol not listed in BASIS_KINDS can support a block only when the operator names it
    (--block-evidence, gateway block_evidence): a new recogniser does not block by default."""
    from .inspect import registry  # only when a list is checked: the inspectors are heavy imports

    return tuple(registry.protocols())


def parse_evidence(text: str) -> tuple[str, ...]:
    """A comma-separated list of evidence kinds from the command line; ValueError if it is wrong."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    problem = check_evidence(kinds)
    if problem is not None:
        raise ValueError(problem)
    return kinds


@dataclass(frozen=True, slots=True)
class BlockFloor:
    """Minimum confidence, and the evidence kinds that may support a block."""

    confidence: str = DEFAULT_CONFIDENCE
    evidence: tuple[str, ...] = DEFAULT_EVIDENCE
    _allowed: frozenset[str] = field(init=False, repr=False, compare=False)
    _rank: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.confidence not in _RANK:
            raise ValueError(
                f"block confidence {self.confidence!r} is not one of {', '.join(CONFIDENCE_LEVELS)}"
            )
        problem = check_evidence(self.evidence)
        if problem is not None:
            raise ValueError(f"block evidence: {problem}")
        object.__setattr__(self, "_allowed", frozenset(self.evidence))
        object.__setattr__(self, "_rank", _RANK[self.confidence])

    def apply(self, decision: Decision, attribution: Attribution) -> Decision:
        """The decision, or ``log`` in its place when the attribution is too weak to block on."""
        if decision.action != "block":
            return decision
        rank = _RANK.get(attribution.confidence or "", -1)
        usable = [k for k in attribution.basis if k in self._allowed]
        if rank >= self._rank and usable:
            return decision
        rule = RULE_BELOW_CONFIDENCE if rank < self._rank else RULE_EVIDENCE
        what = attribution.app or attribution.operator
        basis = ", ".join(attribution.basis) or "no evidence"
        reason = (
            f"log, not block: {what} rests on {basis} (confidence {attribution.confidence}); "
            f"a block needs confidence {self.confidence} or higher (--block-confidence) from "
            f"{', '.join(self.evidence)} (--block-evidence); the policy alone: {decision.reason}"
        )
        return decision._replace(action="log", rule=rule, reason=reason)
