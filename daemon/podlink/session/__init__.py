"""A session and everything it runs: one workspace folder bound to one target.

``core`` is the Session the server and the CLI talk to; its state is one frozen value in a
store (``state``, ``store``) that lifecycle, sync, recovery and the app change only by
dispatching events. Beside it: bringing up and taking down (``lifecycle``), the sync's
batches, halts, resume and flush (``sync``), reconnecting (``recovery``), the published
diagnostics, the protocol view (``status``) and the status file; the app process (``app``),
port forwards (``ports``), debugging (``debug``) and the daemon's sessions (``registry``).
Imports flow one way: server and CLI → session → sync, targets, agent.
"""

from podlink.session.core import ProgressCallback, Session, SessionListener

__all__ = ["ProgressCallback", "Session", "SessionListener"]
