"""Every classifier entry point the fuzz targets call, imported in this one place.

Modules get renamed (the scan loop, the ``classifier scan`` command, the inspection driver);
when that happens only the imports below change, never a target.
"""

from __future__ import annotations

from classifier import decode as _decode_module
from classifier.bgp.aspath import PathClassifier
from classifier.bgp.mrt import MrtReader, Needles
from classifier.bgp.routes import RouteTable
from classifier.capture import CaptureError, CaptureProblem, CaptureReader, open_capture
from classifier.cli import main as cli_main
from classifier.decode import decode, fragment, skip_reason, transport
from classifier.defrag import MAX_DATAGRAM, Defragmenter
from classifier.errors import MalformedError
from classifier.inspect import dns, http, ja4, mmtls, prelude, quic, serverhello, tls
from classifier.reassembly import Stream
from classifier.signatures import Signatures

# The link types decode() supports (its LINKTYPE_* constants), and one it does not (USER0).
LINKTYPES = tuple(sorted(v for k, v in vars(_decode_module).items() if k.startswith("LINKTYPE_")))
UNSUPPORTED_LINKTYPE = 147

__all__ = [
    "LINKTYPES",
    "MAX_DATAGRAM",
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
