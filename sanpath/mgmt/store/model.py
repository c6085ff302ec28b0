"""The pool's tables, named after XenServer's objects: pool, host, PIF, SR, PBD, secret, message (and the
API's token digests). Every row has a uuid and an ``other_config`` map. Rows change only through
``Store`` (store.py); the schema itself changes only through the Alembic migrations beside this file,
which must create exactly these tables."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_uuid() -> str:
    return str(uuidlib.uuid4())


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Pool(Base):
    __tablename__ = "pool"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    singleton: Mapped[int] = mapped_column(Integer, unique=True, default=1)  # a store holds one pool
    name_label: Mapped[str] = mapped_column(String(255))
    key_check: Mapped[str] = mapped_column(Text)  # a token of a known text, made with the pool key
    created: Mapped[float] = mapped_column(Float)
    other_config: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Host(Base):
    __tablename__ = "host"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name_label: Mapped[str] = mapped_column(String(255), unique=True)
    iqn: Mapped[str] = mapped_column(String(223), unique=True)  # RFC 7143 §4.2.7.1: at most 223 bytes
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    multipathing: Mapped[bool] = mapped_column(Boolean, default=True)
    multipath_handle: Mapped[str] = mapped_column(String(16), default="dmp")
    heartbeat: Mapped[float] = mapped_column(Float, default=0.0)  # the daemon's last report (time.time())
    other_config: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PIF(Base):
    __tablename__ = "pif"
    __table_args__ = (UniqueConstraint("host_uuid", "device"),)
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    host_uuid: Mapped[str] = mapped_column(ForeignKey("host.uuid", ondelete="CASCADE"))
    device: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64), default="")
    mtu: Mapped[int] = mapped_column(Integer, default=0)
    carrier: Mapped[bool] = mapped_column(Boolean, default=False)
    kind: Mapped[str] = mapped_column(String(32), default="")  # bond, team, bridge, veth, "" (physical)
    master: Mapped[str] = mapped_column(String(64), default="")
    addresses: Mapped[list[Any]] = mapped_column(default=list)  # CIDR strings
    purpose: Mapped[str] = mapped_column(String(16), default="none")  # storage | management | none
    present: Mapped[bool] = mapped_column(Boolean, default=True)  # still seen through netlink
    other_config: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SR(Base):
    __tablename__ = "sr"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name_label: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32), default="lvmoiscsi")
    shared: Mapped[bool] = mapped_column(Boolean, default=True)
    scsi_id: Mapped[str] = mapped_column(String(255), unique=True)  # one SR per LUN (SRInUse)
    device_config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # secrets as *_secret references
    sm_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    other_config: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PBD(Base):
    __tablename__ = "pbd"
    __table_args__ = (UniqueConstraint("sr_uuid", "host_uuid"),)
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    sr_uuid: Mapped[str] = mapped_column(ForeignKey("sr.uuid", ondelete="CASCADE"))
    host_uuid: Mapped[str] = mapped_column(ForeignKey("host.uuid", ondelete="CASCADE"), index=True)
    device_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    plugged: Mapped[bool] = mapped_column(Boolean, default=False)  # desired: the reconciler's input
    currently_attached: Mapped[bool] = mapped_column(Boolean, default=False)  # observed: its output
    generation: Mapped[int] = mapped_column(Integer, default=0)  # bumped by every plug request
    observed_generation: Mapped[int] = mapped_column(Integer, default=0)  # the plug request last acted on
    error: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the last plug failure, as the API shows it
    other_config: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Secret(Base):
    __tablename__ = "secret"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    value: Mapped[str] = mapped_column(Text)  # encrypted with the pool key, never in clear
    other_config: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Message(Base):
    __tablename__ = "message"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer)
    obj_class: Mapped[str] = mapped_column(String(16))  # pool | host | SR | PBD
    obj_uuid: Mapped[str] = mapped_column(String(36))
    timestamp: Mapped[float] = mapped_column(Float, index=True)  # the store's clock
    body: Mapped[dict[str, Any]] = mapped_column(default=dict)
    text: Mapped[str] = mapped_column(Text, default="")
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    other_config: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiToken(Base):
    """A bearer token of the API over TCP, kept only as its SHA-256 digest (a token is 32 random bytes, so
    a plain digest cannot be guessed back); the token itself is shown once, when it is made."""

    __tablename__ = "api_token"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name_label: Mapped[str] = mapped_column(String(255), unique=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[float] = mapped_column(Float)
    other_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
