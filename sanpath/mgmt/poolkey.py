"""The pool key: a Fernet key (AES-128-CBC with HMAC-SHA256, from ``cryptography``) in a file of mode 0600
that never enters the store. Secret rows (CHAP) are encrypted with it; the pool row keeps a token of a
known text so that a wrong key file is refused at start instead of failing later on a login."""

from __future__ import annotations

import os

from cryptography.fernet import Fernet, InvalidToken

from .errors import XenError

_CHECK = b"sanpath pool key check"


class PoolKey:
    def __init__(self, key: bytes, path: str = "") -> None:
        self._fernet = Fernet(key)
        self.path = path

    @classmethod
    def create(cls, path: str) -> PoolKey:
        """A new key written to ``path`` (mode 0600; refuses to overwrite an existing file)."""
        key = Fernet.generate_key()
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise XenError("VALUE_INVALID", f"{path} exists already; a pool key is never overwritten", path,
                           advice="Give another --key-file, or use the pool that key belongs to.") from None
        except OSError as e:
            raise XenError("VALUE_INVALID", f"cannot write the pool key {path}: {e.strerror}", path) from None
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
        return cls(key, path)

    @classmethod
    def load(cls, path: str) -> PoolKey:
        try:
            with open(path, "rb") as f:
                key = f.read().strip()
            return cls(key, path)
        except OSError as e:
            raise XenError("POOL_KEY_INVALID", f"cannot read the pool key {path}: {e.strerror}", path) from None
        except ValueError:
            raise XenError("POOL_KEY_INVALID", f"{path} does not hold a pool key", path) from None

    def encrypt(self, value: bytes) -> str:
        return self._fernet.encrypt(value).decode()

    def decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode())
        except InvalidToken:
            raise XenError("POOL_KEY_INVALID", f"the pool key {self.path or '(given)'} does not open this "
                           "pool's secrets", self.path) from None

    def check_token(self) -> str:
        return self.encrypt(_CHECK)

    def verify(self, token: str) -> None:
        if self.decrypt(token) != _CHECK:
            raise XenError("POOL_KEY_INVALID", f"{self.path} is not this pool's key", self.path)
