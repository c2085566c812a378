"""The Docker target: a container podlink creates or attaches to through the Docker Engine.

``target`` implements the ``Target`` protocol; ``exec`` runs commands through the Engine's
exec API, ``build`` builds the configured image, ``admin`` lists and removes what podlink
created (for ``podlink purge``).
"""
