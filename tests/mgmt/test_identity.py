"""The host IQN: generated as XenServer does on first start, and checked before it is set."""

from __future__ import annotations

import re

import pytest

from sanpath.mgmt.errors import XenError
from sanpath.mgmt.identity import check_iqn, generate_iqn

WHEN = 1796256000.0  # 2026-12-01 UTC


@pytest.mark.parametrize(("fqdn", "domain"), [
    ("xs1.lab.example.org", "org.example.lab"),
    ("xs1.example.org", "org.example"),
    ("xs1", "com.example"),
    ("localhost", "com.example"),
    ("xs1.Under_Score.org", "com.example"),  # not a valid name part: the fallback
])
def test_generated_iqn_has_the_reversed_domain_and_8_hex(fqdn: str, domain: str) -> None:
    iqn = generate_iqn(fqdn, WHEN)
    assert re.fullmatch(rf"iqn\.2026-12\.{re.escape(domain)}:[0-9a-f]{{8}}", iqn), iqn
    assert check_iqn(iqn) == iqn
    assert generate_iqn(fqdn, WHEN) != iqn  # the 8 hex characters are random


@pytest.mark.parametrize("name", ["iqn.2026-12.com.example:host1", "eui.0123456789ABCDEF",
                                  "naa.60014055A1B2C3D4E5F60718293A4B5C", "iqn.1992-01.com.example"])
def test_valid_names_pass(name: str) -> None:
    assert check_iqn(name) == name


@pytest.mark.parametrize("name", ["", "host1", "iqn.2026-13.com.example:x", "iqn.2026-12.Com.Example:x",
                                  "eui.0123", "iqn.2026-12.com.example:a b", "iqn.2026-12.com.example:" + "x" * 220])
def test_invalid_names_are_refused_with_the_format(name: str) -> None:
    with pytest.raises(XenError, match="RFC 7143") as e:
        check_iqn(name)
    assert e.value.name == "VALUE_INVALID"
