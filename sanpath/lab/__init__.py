"""The namespace lab: the seed's reference topology (a host with a management NIC and storage NICs on
separate subnets, one switch per subnet, an array with controllers A and B) built from network
namespaces, veth cables and bridges, with cable pulls and tbf link shaping. Needs root."""

from .lab import Lab, parse_rate
from .netns import NetnsError
from .topology import Link, Topology

__all__ = ["Lab", "Link", "NetnsError", "Topology", "parse_rate"]
