"""The in-target agent and the daemon's way of talking to it.

* ``agent.py`` is the agent itself: one stdlib-only file that runs inside the target (any
  Python 3.8 or newer) and does all file work there, confined to each sync root. It is sent
  over the exec stream at start, never copied into the target, and imports nothing from
  podlink.
* ``wire.py`` is the frame layout, message types and reply payloads, daemon side.
* ``client.py`` is ``Agent``, the asyncio client: it starts the agent through a ``Target``
  and pipelines requests over the one stream.
* ``two_way.py`` holds what two-way sync adds on the client side: preconditions, the
  streaming of READs into local files, and the decoding of reported changes.
"""
