from sanpath.mgmt.advisor.finding import Severity

from .seed import clean, host, only, pbd, sr


def two(**second: object) -> object:
    return clean(hosts=(host(), host("host2", "iqn.2026-12.com.example:host2", **second)),
                 srs=(sr(pbds=(pbd(), pbd("host2"))),))


def test_multipathing_off_on_one_host() -> None:
    [f] = only(two(multipathing=False), "pool-consistency")
    assert f.severity == Severity.ERROR and f.evidence == {"on": ["host1"], "off": ["host2"]}


def test_handlers_that_differ() -> None:
    [f] = only(two(handler="rdac"), "pool-consistency")
    assert f.evidence == {"handlers": {"dmp": ["host1"], "rdac": ["host2"]}}
