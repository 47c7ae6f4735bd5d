"""What inspection learnt about one flow: a slotted record of typed fields.

Most flows never learn anything, or only what their client's first bytes were: they share one
read-only instance (``NO_FACTS``, or one per ``app_proto`` from :func:`proto_only`) instead of
each holding its own. A flow that learns more gets its own, writable, copy
(``Flow.own_facts()``); writing to a shared instance raises, so a forgotten ``own_facts()`` cannot
leak one flow's facts into every other flow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:  # types only: the inspectors stay out of the flow table's imports
    from .inspect.http import HttpRequest
    from .inspect.prelude import Prelude
    from .inspect.quic import QuicFacts, QuicInitialState
    from .inspect.tls import ClientHello


class FlowFacts:
    """Facts about one flow; every field starts empty (None, or 0 for a count)."""

    __slots__ = (
        "app_proto",
        "dns_chains",
        "dns_queries",
        "dns_responses",
        "greeting",
        "http",
        "ja4",
        "ja4s",
        "prelude",
        "quic",
        "quic_state",
        "tls",
    )

    def __init__(self, app_proto: str | None = None) -> None:
        # What the client's first bytes were: tls, http, quic, dns, unknown, or the id of a
        # registered protocol (classifier.inspect.registry).
        self.app_proto: str | None = app_proto
        self.tls: ClientHello | None = None  # over TCP, or inside the tunnel of an HTTP CONNECT
        self.http: HttpRequest | None = None  # the client's first request head
        self.quic: QuicFacts | None = None  # what the client's QUIC Initials showed
        # QUIC Initial decryption in progress (keys, CRYPTO data): dropped once it is done.
        self.quic_state: QuicInitialState | None = None
        # The greeting of the registered protocol ``app_proto`` names, as its parser returned it.
        self.greeting: Any = None
        self.dns_queries: list[str] | None = None  # names a DNS flow's queries asked (bounded)
        self.dns_chains: list[tuple[str, ...]] | None = None  # CNAME chains of its bound answers
        self.dns_responses = 0  # responses of a DNS flow bound to its queries
        self.prelude: Prelude | None = None  # what came before the ClientHello (SOCKS, STARTTLS...)
        self.ja4: str | None = None  # JA4 of the ClientHello, computed on first use (attribute.flow_ja4)
        self.ja4s: str | None = None  # JA4S of the ServerHello, when the scan was asked to read it

    def copy(self) -> FlowFacts:
        """A writable copy (lists copied too, so the two never share a mutable value)."""
        new = FlowFacts(self.app_proto)
        new.tls = self.tls
        new.http = self.http
        new.quic = self.quic
        new.quic_state = self.quic_state
        new.greeting = self.greeting
        new.dns_queries = list(self.dns_queries) if self.dns_queries is not None else None
        new.dns_chains = list(self.dns_chains) if self.dns_chains is not None else None
        new.dns_responses = self.dns_responses
        new.prelude = self.prelude
        new.ja4 = self.ja4
        new.ja4s = self.ja4s
        return new

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in FlowFacts.__slots__
            if getattr(self, name) not in (None, 0)
        )
        return f"{type(self).__name__}({shown})"


class SharedFacts(FlowFacts):
    """Facts many flows hold at once: read-only (``Flow.own_facts()`` gives a flow its own)."""

    __slots__ = ()

    def __init__(self, app_proto: str | None = None) -> None:
        template = FlowFacts(app_proto)
        for name in FlowFacts.__slots__:
            object.__setattr__(self, name, getattr(template, name))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"shared flow facts are read-only (set {name} through Flow.own_facts())")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"shared flow facts are read-only (cannot delete {name})")


NO_FACTS = SharedFacts()  # the facts of a flow that has shown nothing yet
_PROTO_ONLY: dict[str, SharedFacts] = {}


def proto_only(app_proto: str) -> SharedFacts:
    """The shared facts of flows that showed only what their first bytes were (one per kind: the
    kinds are few, the protocols the inspectors know plus unknown)."""
    shared = _PROTO_ONLY.get(app_proto)
    if shared is None:
        shared = _PROTO_ONLY[app_proto] = SharedFacts(app_proto)
    return shared
