"""File sync: ``core/`` is pure (snapshots in, plans out); the modules beside it do the I/O.

``ignore`` decides what is synced, ``scan`` reads the local tree, ``watch`` turns file-system
events into debounced batches. ``engine`` scans and hands each scope to ``passes``, which
plans it (``core.pass_plan``: ``core.reconcile`` merges, ``core.safety`` decides halts,
``core.plan`` orders operations) and applies it through ``remote_apply`` (uploads) and
``local_apply`` (downloads and conflict copies). ``agreed`` keeps the agreed state (stored by
``ancestor``), ``deletions`` the recent deletions the halts judge together, ``digests`` fills
in digests, ``follow`` takes in the target's own changes, ``outcome`` says what a pass did.
"""
