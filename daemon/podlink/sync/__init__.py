"""File sync: ``core/`` is pure (snapshots in, plans out); the modules beside it do the I/O.

``ignore`` decides what is synced, ``scan`` reads the local tree, ``watch`` turns file-system
events into debounced batches, and ``engine`` applies plans through the agent.
"""
