"""The catalogue of the Redis backend's Lua scripts: their sources, the keys each declares,
and the head of the EVALSHA command that runs one.

Each script in lua/ is sent with the shared parts it uses before it (`PARTS`) and a
first line that names its keys (`KEYS`, in the order `DECLARES` gives). Key lists and
command heads are cached per live state, since the same ones are built write after
write; see `CACHED_KEYS` for what is not.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from .codec import Names, escape

LAYOUT = 2
"""The data layout and message format of this release's Redis backend; the scripts'
`LAYOUT` (lua/common.lua) is the same number. A node refuses a server whose
`ls:layout` names another one."""

SCRIPTS = ("open", "init", "lock", "read", "lease", "put", "delete", "append", "increment",
           "reset", "stop", "presence", "save", "batch", "many")  # fmt: skip

KEYS = {"M": "m", "S": "s", "Z": "z", "H": "h", "L": "L", "O": "o", "LK": "l:", "K": "k",
        "W": "w", "V": "v", "P": "p", "PN": "pn"}  # fmt: skip
"""Each key of a live state: its name in the scripts, and what follows `ls:{spec:key}:` in
it (LK, a list property's key, ends with the property's escaped name). A key added here
is declared to every script that `DECLARES` does not list (see lua/common.lua)."""

DECLARES = {
    "increment": ("M", "S", "Z", "K", "W", "V"),
    "put": ("M", "S", "Z", "K", "W", "V", "L", "LK"),
    "delete": ("M", "S", "Z", "K", "W", "V", "L", "LK"),
    "append": ("M", "S", "Z", "K", "W", "V", "L", "LK"),
    "lock": ("O",),
}
"""The keys a script declares, in order, when not all of `KEYS`. During a cluster's slot
migration a script waits (TRYAGAIN) while any key it declares is not on the node that runs
it, and a key that does not exist counts as not there: so each declares only the keys it
may touch. put and delete go first with the six before L and LK (their property is rarely
a list), and reply 'lists' when it is one, without writing; they are called again with all
eight."""

WITHOUT_LISTS = 6
"""How many of put's and delete's keys come before L and LK."""

PARTS = {"increment": ("common", "write", "number"), "put": ("common", "write"),
         "batch": ("common", "write"),
         "delete": ("common", "write"), "append": ("common", "write"),
         "reset": ("common", "state", "write"), "lock": ("common",),
         "presence": ("common", "state", "write"),
         "open": ("common", "state", "roster"),
         "lease": ("common", "state", "roster"),
         "read": ("common", "state", "roster")}  # fmt: skip
"""The shared parts each script is built from (the rest take common and state). A script
defines every function of its parts on each call, so each gets only what it uses."""

ROLE_FIELD = {"group": "g", "public": "p"}
"""The meta hash field of each role's permissions (ARGV 3 of a write, 1 of stop)."""

SHARED = ("put", "delete", "append", "increment")
"""The writes that may share a call (lua/many.lua): a put of a whole list goes alone, as
its items are many arguments."""

CACHED_KEYS = 256
"""Key lists and commands are cached for a live state's key prefix and property name of
up to this many characters together; longer ones (keys and property names can be
kilobytes long) are built each time, so hostile keys cannot grow the caches' memory."""

Keys = tuple[str, ...]


def load_sources() -> dict[str, str]:
    """Each script with its shared parts before it (after its `#!lua flags=` line, if any).

    Raises RuntimeError if lua/common.lua's LAYOUT is not `LAYOUT` (a packaging bug).
    """
    folder = resources.files(__package__).joinpath("lua")
    parts = {
        name: folder.joinpath(f"{name}.lua").read_text()
        for name in ("common", "state", "write", "number", "roster")
    }
    if f"local LAYOUT = '{LAYOUT}'" not in parts["common"]:
        raise RuntimeError("lua/common.lua's LAYOUT differs from scripts.py's: a packaging bug.")
    sources = {"many": _many(folder, parts)}
    for name in SCRIPTS[:-1]:
        text = folder.joinpath(f"{name}.lua").read_text()
        shebang = ""
        if text.startswith("#!"):
            shebang, _, text = text.partition("\n")
            shebang += "\n"
        shared = "".join(parts[part] for part in PARTS.get(name, ("common", "state")))
        # Its keys by their names in the scripts; the ones it does not declare are nil.
        declared = DECLARES.get(name, tuple(KEYS))
        names = [*declared, *(key for key in KEYS if key not in declared)]
        values = ", ".join(f"KEYS[{i}]" for i in range(1, len(declared) + 1))
        sources[name] = f"{shebang}local {', '.join(names)} = {values}\n{shared}{text}"
    return sources


def _many(folder: Any, parts: dict[str, str]) -> str:
    """lua/many.lua, after each of `SHARED` as a function (see lua/many.lua), and write.lua
    once: its functions are made once per call, not once per write."""
    declared = DECLARES["increment"]  # then L and the list keys, only when one is a list
    names = [*declared, "L", *(key for key in KEYS if key not in (*declared, "L"))]
    values = ", ".join(f"KEYS[{i}]" for i in range(1, len(declared) + 2))
    scripts = "".join(
        f"local function {name}()\n{folder.joinpath(f'{name}.lua').read_text()}\nend\n"
        for name in SHARED
    )
    text = folder.joinpath("many.lua").read_text()
    return (
        f"local {', '.join(names)} = {values}\n{parts['common']}local GIVEN = ARGV\n"
        f"local ARGV = {{}}\n{parts['write']}{parts['number']}{scripts}{text}"
    )


def declared(prefix: str, script: str, prop: str = "", lists: bool = True) -> Keys:
    """The keys `script` declares for the live state of `prefix` (every key for a script
    that `DECLARES` does not list); `prop` names the property of LK, the list key. Without
    `lists`, those before L and LK (see `DECLARES`)."""
    if len(prefix) + len(prop) <= CACHED_KEYS:
        return declared_cached(prefix, script, prop, lists)
    return declared_now(prefix, script, prop, lists)


def declared_now(prefix: str, script: str, prop: str, lists: bool) -> Keys:
    """`declared`, built anew."""
    names = tuple(DECLARES.get(script, KEYS))
    return tuple(
        f"{prefix}:l:{escape(prop)}" if name == "LK" else f"{prefix}:{KEYS[name]}"
        for name in (names if lists else names[:WITHOUT_LISTS])
    )


declared_cached = functools.lru_cache(maxsize=4096)(declared_now)


def command_now(sha: str, keys: Keys, names: Names) -> tuple[Any, ...]:
    """EVALSHA of script `sha` on `keys`, up to ARGV 1 and 2: the channel and SPUBLISH."""
    prefix = keys[0].rpartition(":")[0]  # every key is the live state's prefix, ':' and more
    return ("EVALSHA", sha, len(keys), *keys, names.channel(prefix), "SPUBLISH")


command_cached = functools.lru_cache(maxsize=4096)(command_now)


def fence(expect: int | None, epoch: str | None) -> str:
    """ARGV[5] of a write: the version it expects and the lifetime it was made for."""
    if epoch is None:
        return "" if expect is None else str(expect)
    return f"{'' if expect is None else expect}@{epoch}"
