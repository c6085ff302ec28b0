"""NBD export: serve any BlockDevice to NBD clients (qemu, nbdcopy, nbdinfo, the kernel's nbd-client).

``codec`` (bytes), ``framing`` (cutting the stream), ``protocol`` (what is allowed when) are sans-IO;
``server`` is the asyncio server. Start with :class:`NbdServer`.
"""

from .protocol import ExportInfo
from .server import NbdServer

__all__ = ["ExportInfo", "NbdServer"]
