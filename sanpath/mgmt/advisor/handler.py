"""handler: the multipath handler and settings fit the array, as its standard INQUIRY tells.

- LSI/Engenio-family arrays (vendor LSI or ENGENIO, product INF-01-00 under any vendor's name: Dell
  MD3xxx, IBM DS3xxx/DS4xxx/DS5xxx, NetApp E-series, Sun/StorageTek) on a host whose handler is dmp: the
  guide says LSI data paths work best with MPP RDAC.
- An array that reports TPGS (ALUA) whose settings do not follow it (prio alua with group_by_prio): I/O
  would go to non-optimized or standby ports as readily as to optimized ones.
- Arrays that cannot do iSCSI over several addresses (Dell EqualLogic, HP LeftHand): the guide advises a
  bond rather than multipathing."""

from __future__ import annotations

import re

from .facts import Facts, Lun
from .finding import HANDLER_SUPPORT, RDAC, REDUNDANCY, Finding, Severity

ID = "handler"

_LSI = (
    (re.compile(r"^(LSI|ENGENIO)$"), re.compile(r"")),
    (re.compile(r""), re.compile(r"^INF-01-00")),
    (re.compile(r"^DELL$"), re.compile(r"^MD3")),
    (re.compile(r"^IBM$"), re.compile(r"^(17[0-9][0-9]|18[0-9][0-9]|DS[345])")),
    (re.compile(r"^(SUN|STK)$"), re.compile(r"^(LCSM100|FLEXLINE|CSM200|STK6580|SUN_6180)")),
)
_SINGLE_ADDRESS = ((re.compile(r"^EQLOGIC$"), "Dell EqualLogic"), (re.compile(r"^LEFTHAND$"), "HP LeftHand"))


def lsi_family(vendor: str, product: str) -> bool:
    v, p = vendor.strip(), product.strip()
    return any(a.search(v) and b.search(p) for a, b in _LSI)


def _inquiry(lun: Lun) -> dict[str, object]:
    return {"scsi_id": lun.scsi_id, "vendor": lun.vendor, "product": lun.product, "tpgs": lun.tpgs}


def check(facts: Facts) -> list[Finding]:
    out = []
    luns = {lun.scsi_id: lun for array in facts.arrays for lun in array.luns}
    multipathing = [h for h in facts.hosts if h.multipathing is not False]
    for lun in luns.values():
        subject = f"LUN {lun.scsi_id} ({lun.vendor.strip()} {lun.product.strip()})"
        single = next((name for pattern, name in _SINGLE_ADDRESS if pattern.search(lun.vendor.strip())), None)
        if single is not None:
            out.append(Finding(
                ID, Severity.WARNING, REDUNDANCY, subject,
                f"{single} arrays cannot do iSCSI over several addresses: multipathing gains nothing on them",
                "Bond the storage NICs instead (one address to the array's group address), as the guide advises "
                "for such arrays.", _inquiry(lun)))
        if lsi_family(lun.vendor, lun.product):
            on_dmp = [h.name for h in multipathing if h.handler == "dmp"] if facts.pool else ["this host"]
            if on_dmp:
                out.append(Finding(
                    ID, Severity.WARNING, RDAC, subject,
                    f"an LSI/Engenio-family array under the dmp handler ({', '.join(on_dmp)})",
                    "Set the rdac handler in maintenance mode: `sanpath host set-multipathing on --handler rdac` "
                    "on every host of the pool.", {**_inquiry(lun), "hosts": on_dmp}))
    for s in facts.settings:
        seen = luns.get(s.scsi_id)
        if seen is None or not seen.tpgs or lsi_family(seen.vendor, seen.product):
            continue
        prio, grouping = s.values.get("prio"), s.values.get("path_grouping_policy")
        if prio == "alua" and grouping == "group_by_prio":
            continue
        where = f"{s.host}: " if s.host else ""
        out.append(Finding(
            ID, Severity.WARNING, HANDLER_SUPPORT, f"{where}LUN {seen.scsi_id}",
            f"the array reports ALUA (TPGS {seen.tpgs:02b}b) but the LUN runs with prio {prio} and "
            f"path_grouping_policy {grouping}: I/O goes to non-optimized ports as readily as to optimized ones",
            "Set prio=alua and path_grouping_policy=group_by_prio for this array (a [[device]] section of the "
            "multipath configuration).",
            {**_inquiry(seen), "prio": prio, "path_grouping_policy": grouping,
             "origins": {k: s.origins.get(k, "") for k in ("prio", "path_grouping_policy")}}, s.host))
    return out
