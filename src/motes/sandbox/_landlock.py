"""Landlock through plain syscalls (ctypes): the unprivileged second way to confine.

Used where bubblewrap cannot run. ``abi()`` asks the kernel which Landlock ABI it has
(0: none). ``Ruleset`` is built in the parent (pure data) and ``apply`` runs in the child
between fork and exec: ``PR_SET_NO_NEW_PRIVS``, a ruleset that handles every right the
ABI knows, one ``PATH_BENEATH`` rule per allowed tree, and ``restrict_self``. With ABI
4 or later TCP bind and connect are handled with no rule allowing them (no TCP), and
with ABI 6 abstract Unix sockets and signals are scoped to the sandbox.

What Landlock does not give, and bubblewrap does: a PID namespace, a private /tmp (the
caller gives a fresh directory instead), and UDP (not handled by any ABI so far).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from dataclasses import dataclass, field

__all__ = ["Ruleset", "abi"]

_SYS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446), "riscv64": (444, 445, 446)}
_PR_SET_NO_NEW_PRIVS = 38
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_WRITE_TREE = sum(1 << i for i in range(4, 13))  # remove_*, make_*
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | _TRUNCATE | _IOCTL_DEV
_NET_TCP = (1 << 0) | (1 << 1)
_SCOPE = (1 << 0) | (1 << 1)

READ = EXECUTE | READ_FILE | READ_DIR
WRITE = READ | WRITE_FILE | _WRITE_TREE | _REFER | _TRUNCATE

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [
        ("allowed_access", ctypes.c_uint64),
        ("parent_fd", ctypes.c_int32),
    ]


def _numbers() -> tuple[int, int, int] | None:
    return _SYS.get(platform.machine())


def abi() -> int:
    """The kernel's Landlock ABI version, 0 if it has none (or it is disabled)."""
    nums = _numbers()
    if nums is None:
        return 0
    version = _libc.syscall(nums[0], None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(int(version), 0)


def _handled_fs(version: int) -> int:
    rights = READ | WRITE_FILE | _WRITE_TREE
    if version >= 2:
        rights |= _REFER
    if version >= 3:
        rights |= _TRUNCATE
    if version >= 5:
        rights |= _IOCTL_DEV
    return rights


@dataclass(slots=True)
class Ruleset:
    """Trees the child may use: path -> rights (``READ`` or ``WRITE``)."""

    version: int
    paths: dict[str, int] = field(default_factory=dict)

    @property
    def denies_tcp(self) -> bool:
        return self.version >= 4

    def apply(self) -> None:
        """Restrict the calling process for good (run in the child, before exec)."""
        nums = _numbers()
        assert nums is not None and self.version >= 1
        create, add_rule, restrict = nums
        handled = _handled_fs(self.version)
        attr = _RulesetAttr(handled, _NET_TCP if self.version >= 4 else 0, 0)
        if self.version >= 6:
            attr.scoped = _SCOPE
        size = 8 if self.version < 4 else (16 if self.version < 6 else 24)
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        fd = int(_libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), 0))
        if fd < 0:
            raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
        try:
            for path, rights in self.paths.items():
                try:
                    pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    allowed = rights & handled
                    if not os.path.isdir(path):
                        allowed &= _FILE_ONLY
                    rule = _PathBeneath(allowed, pfd)
                    if _libc.syscall(add_rule, fd, _RULE_PATH_BENEATH, ctypes.byref(rule), 0):
                        raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
                finally:
                    os.close(pfd)
            if _libc.syscall(restrict, fd, 0) != 0:
                raise OSError(ctypes.get_errno(), "landlock_restrict_self")
        finally:
            os.close(fd)
