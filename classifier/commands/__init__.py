"""The bodies of the core commands (``scan``, ``policy``, ``signatures check``, ``schema``).

``classifier.cli`` builds their parsers and imports a command's module only when it runs, so
each module here may import what its command needs.
"""
