"""podlink: keep a workspace synced into a dev target and drive it from any editor.

The daemon package. Feature modules live beside this file; the language server that exposes
them is in ``server/``, the targets in ``targets/``, the in-target agent in ``agent/`` and the
sync engine in ``sync/``.
"""

__version__ = "0.1.0"
