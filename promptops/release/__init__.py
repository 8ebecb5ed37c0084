"""Environments: promote a reviewed prompt version through dev, staging and prod, roll it back,
and load what was promoted at runtime (``promptops.load``).

``promote`` moves pointers with evidence; ``status`` reports; ``runtime`` loads
releases. The files themselves (lock, snapshots, audit log) are read and
written by ``promptops.lockfile``, below this package, since lint reads them too.
"""
