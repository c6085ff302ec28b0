"""The data path of one host: the attach service (sessions -> multipath device -> NBD export) and the
process that runs it for one plugged PBD under the host daemon. Never imports ``sanpath.mgmt``."""
