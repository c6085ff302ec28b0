from sanpath.mgmt.advisor.facts import Nic
from sanpath.mgmt.advisor.finding import Severity

from .seed import clean, host, only


def test_two_storage_nics_on_one_subnet() -> None:
    nics = (Nic("host-mgmt", ("198.18.0.10/24",), purpose="management"),
            Nic("host-s1", ("198.18.1.10/24",), purpose="storage"),
            Nic("host-s2", ("198.18.1.11/24",), purpose="storage"))
    [f] = only(clean(hosts=(host(nics=nics),)), "separate-subnets")
    assert f.severity == Severity.ERROR and f.host == "host1"
    assert f.evidence == {"subnet": "198.18.1.0/24", "nics": {"host-s1": ["198.18.1.10/24"],
                                                              "host-s2": ["198.18.1.11/24"]}}
    assert f.section.chapter == 2 and "subnet of its own" in f.fix
