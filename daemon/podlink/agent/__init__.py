"""The in-target agent and the daemon's way of talking to it.

* ``agent.py`` is the agent itself: one stdlib-only file that runs inside the target (any
  Python 3.8 or newer) and does all file work there, confined to each sync root. It is sent
  over the exec stream at start, never copied into the target, and imports nothing from
  podlink.
* ``wire.py`` is the frame layout, message types and reply payloads, daemon side.
* ``client.py`` is ``Agent``, the asyncio client: it starts the agent through a ``Target``
  and makes its requests; ``channel.py`` pipelines them over the one stream, and
  ``local_files.py`` reads the local files a batch sends.
* ``transport.py`` is what sync needs from a transport (``FileTransport``, and
  ``TwoWayTransport`` for what only the agent can do); ``tar_fallback.py`` is the upload-only
  transport for targets without Python.
* ``two_way.py`` holds what two-way sync adds on the client side: preconditions, the
  streaming of READs into local files, and the decoding of reported changes.
"""
