"""classifier: recognise WeChat and TikTok infrastructure in traffic and decide block/log/allow per
the dated US orders, with the evidence, signature, provision and date rule behind every verdict."""

__version__ = "0.1.0"

from classifier import classcode as _classcode

_classcode.start()  # before any of our modules defines a dataclass; cli.main calls finish()
