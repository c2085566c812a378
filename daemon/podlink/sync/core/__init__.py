"""The pure heart of sync: snapshots, diffs and plans. Nothing here touches a file system.

Tests of this package need no temporary directories: they build snapshots from tables.
"""
