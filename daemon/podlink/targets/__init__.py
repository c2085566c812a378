"""Targets: where the workspace is synced to and the app runs.

``base`` holds the ``Target`` protocol every target implements; ``local``, ``docker`` and
``kubernetes`` implement it. Nothing outside this package knows which kind it talks to.
"""
