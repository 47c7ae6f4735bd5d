"""classifier: recognise WeChat and TikTok infrastructure in traffic and decide block/log/allow per
the dated US orders, with the evidence, signature, provision and date rule behind every verdict."""

__version__ = "0.1.0"

import gc as _gc

# Importing is a burst of long-lived objects (the class-code cache among them): the collector would
# run over and over and find nothing to free (classifier.startup). Paused here only, never frozen:
# this runs in any process that imports the package.
_collecting = _gc.isenabled()
_gc.disable()
try:
    from classifier import classcode as _classcode

    _classcode.start()  # before any of our modules defines a dataclass; cli.main calls finish()
finally:
    if _collecting:
        _gc.enable()
