"""sanpath: a userspace iSCSI multipathing stack (initiator, multipath handler, NBD export, software array)."""

__version__ = "0.1.0"
