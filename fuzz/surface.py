"""Every classifier entry point the fuzz targets call, imported in this one place.

Modules get renamed (the scan loop, the ``classifier scan`` command, the inspection driver);
when that happens only the imports below change, never a target.
"""

from __future__ import annotations

from classifier.bgp.aspath import PathClassifier
from classifier.bgp.mrt import MrtReader, Needles
from classifier.bgp.routes import RouteTable
from classifier.capture import CaptureError, CaptureProblem, CaptureReader, open_capture
from classifier.cli import main as cli_main
from classifier.decode import (
    DPORT,
    FRAG_KEY,
    PAYLOAD,
    PROTO,
    SPORT,
    SRC,
    TUNNEL,
    decode,
    fragment,
    skip_reason,
    transport,
)
from classifier.defrag import MAX_DATAGRAM, Defragmenter
from classifier.errors import MalformedError
from classifier.inspect import dns, http, ja4, mmtls, prelude, quic, serverhello, tls
from classifier.linktypes import SUPPORTED
from classifier.reassembly import Stream
from classifier.signatures import Signatures
from classifier.tunnels import MAX_DEPTH as MAX_TUNNEL_DEPTH

# The link types decode() supports, and one it does not (USER0).
LINKTYPES = tuple(sorted(SUPPORTED))
UNSUPPORTED_LINKTYPE = 147

__all__ = [
    "DPORT",
    "FRAG_KEY",
    "LINKTYPES",
    "MAX_DATAGRAM",
    "MAX_TUNNEL_DEPTH",
    "PAYLOAD",
    "PROTO",
    "SPORT",
    "SRC",
    "TUNNEL",
    "UNSUPPORTED_LINKTYPE",
    "CaptureError",
    "CaptureProblem",
    "CaptureReader",
    "Defragmenter",
    "MalformedError",
    "MrtReader",
    "Needles",
    "PathClassifier",
    "RouteTable",
    "Signatures",
    "Stream",
    "cli_main",
    "decode",
    "dns",
    "fragment",
    "http",
    "ja4",
    "mmtls",
    "open_capture",
    "prelude",
    "quic",
    "serverhello",
    "skip_reason",
    "tls",
    "transport",
]
