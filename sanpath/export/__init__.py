"""Exports: serving a sanpath BlockDevice (a MultipathDevice, a session's LUN, a backstore) to consumers
that speak a block protocol. ``device`` adapts any BlockDevice to byte-granular export semantics;
``nbd`` is the NBD server."""
