"""Access control: which permissions attached clients (group) and other callers (public) have."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ._exceptions import InvalidValueError, PermissionDeniedError

Role = Literal["group", "public"]
"""`group` for calls through an attached client, `public` for every other caller."""

READ, WRITE, DELETE, RESET = 1, 2, 4, 8
ALL = READ | WRITE | DELETE | RESET
PERMISSIONS = {"read": READ, "write": WRITE, "delete": DELETE, "reset": RESET}
EXAMPLE = "{'group': 'all', 'public': ['read']}"


@dataclass(frozen=True, slots=True)
class ACL:
    """A parsed ACL: one bit mask of permissions per role."""

    group: int = ALL
    public: int = ALL

    @classmethod
    def parse(cls, acl: object, where: str) -> ACL:
        """Parse `{"group": ..., "public": ...}`, each `"all"` or a list of permission names.

        Raises InvalidValueError, naming `where`, with a valid example, if `acl` is malformed.
        """
        if isinstance(acl, ACL):
            return acl
        if not isinstance(acl, Mapping) or set(acl) != {"group", "public"}:
            raise InvalidValueError(
                f"The ACL of {where} must be a dict with exactly the keys 'group' and 'public', "
                f"such as {EXAMPLE}; got {acl!r}."
            )
        return cls(_mask(acl["group"], "group", where), _mask(acl["public"], "public", where))

    def allows(self, role: Role, permission: int) -> bool:
        """Whether `role` holds every permission bit in `permission`."""
        granted = self.group if role == "group" else self.public
        return granted & permission == permission

    def check(self, role: Role, permission: int, what: str, subject: str) -> None:
        """Raise PermissionDeniedError unless `role` holds `permission`."""
        if not self.allows(role, permission):
            raise denied(role, permission, what, subject)


def names(mask: int) -> list[str]:
    """The permission names in `mask`, in the order read, write, delete, reset."""
    return [name for name, bit in PERMISSIONS.items() if mask & bit]


def denied(role: Role, permission: int, what: str, subject: str) -> PermissionDeniedError:
    """The error for a call that `role` may not make."""
    caller = "an attached client (group)" if role == "group" else "a public caller"
    needed = " and ".join(repr(name) for name in names(permission))
    fix = (
        "attach a client to make the call as a group member, or grant it in the ACL"
        if role == "public"
        else "grant it to 'group' in the ACL"
    )
    return PermissionDeniedError(
        f"{caller.capitalize()} may not {what} {subject}: the ACL does not grant {needed} "
        f"to {role!r}; {fix}."
    )


def _mask(value: object, role: str, where: str) -> int:
    if value == "all":
        return ALL
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise InvalidValueError(
            f"The ACL of {where} gives {role!r} {value!r}; use 'all' or a list drawn from "
            f"{list(PERMISSIONS)}, such as {EXAMPLE}."
        )
    mask = 0
    for name in value:
        if name not in PERMISSIONS:
            raise InvalidValueError(
                f"The ACL of {where} gives {role!r} the unknown permission {name!r}; "
                f"permissions are {list(PERMISSIONS)} or 'all', such as {EXAMPLE}."
            )
        mask |= PERMISSIONS[name]
    return mask
