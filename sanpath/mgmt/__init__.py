"""The management plane: pool, hosts, PIFs, SRs, PBDs, the pool store, the host daemon and its API."""
