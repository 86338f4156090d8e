"""`LiveState`: the class users subclass, with the server API for public callers on it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from ._declare import DEFAULT, Default, Spec
from ._node import current_node
from ._rules import Caller
from ._values import JSON, FrozenList

if TYPE_CHECKING:
    from ._client import Client, OnChange


class LiveState(Spec):
    """The base of every state spec: subclass it to describe one kind of shared state.

    Class attributes: `ttl` (seconds a live state lives on after its last client
    detaches, None for ever; default 60), `acl` (default all permissions to group
    and public), `limits` (sizes, see Limits) and `name` (how nodes name this
    spec to each other: the class name unless set; two specs may not share one).
    Override `on_mount(key)` to give each key its initial state, and `on_persist`
    to save it (tuned by `persist_interval` and `max_persist_failures`).

    The class methods are the server API for public callers (not attached); they
    use the current node (see livestate.use and livestate.lifespan). Each write
    takes `caller`, who it is made for (`Caller("public", identity)`), which the
    spec's `allow` and actions see; None (the default) is trusted server code. A
    write that `allow` refuses raises PermissionDeniedError with its reason. Each
    write also takes `write_id`, the caller's name for it (1 to 128 characters): a
    retry with the same id within 10 s (after BackendUnavailableError, say) applies
    once and returns the first result (see docs/redis.md, "Retries and write ids").
    """

    @classmethod
    async def attach(
        cls,
        key: str,
        on_change: OnChange | None = None,
        *,
        max_pending: int = 1000,
        max_lag: float = 1.0,
        caller: Caller | None = None,
    ) -> Client:
        """Attach a client (a group member) to the live state for `key`, starting it if absent.

        `on_change(change)` (sync or async) is called with every change; without
        it, read them with `client.changes()`. A reader that falls behind by more
        than `max_pending` changes or `max_lag` seconds gets one `reset` with the
        whole state instead of the backlog, so it never shows a state long gone.
        `caller` is who the client acts for (`Caller("group", identity)`), as the
        spec's `allow` and actions see it; None (the default) is trusted server code.
        Raises whatever on_mount raises, InvalidValueError for a bad key or
        on_mount result, PermissionDeniedError if the group may not read.
        """
        return await current_node().attach(
            cls, key, on_change, max_pending=max_pending, max_lag=max_lag, caller=caller
        )

    @classmethod
    async def get(cls, key: str, prop: str | Literal[Default.DEFAULT] = DEFAULT) -> Any:
        """The whole state (a read-only Mapping), or the value of `prop`.

        Raises NotFoundError if not running, PropertyNotFoundError if `prop` is
        absent, PermissionDeniedError unless public callers may read.
        """
        return await current_node().get(cls, key, prop)

    @classmethod
    async def presence(cls, key: str) -> Mapping[str, FrozenList]:
        """Who is present in the live state for `key`: identity -> its metas (see Client.track).

        Raises NotFoundError if not running, PermissionDeniedError unless public
        callers may read.
        """
        return await current_node().presence(cls, key)

    @classmethod
    async def put(
        cls,
        key: str,
        prop: str,
        value: Any,
        *,
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> None:
        """Set `prop` to `value` (JSON).

        Raises NotFoundError, PermissionDeniedError (needs write),
        InvalidValueError, StateTooLargeError.
        """
        await current_node().put(cls, key, prop, value, caller=caller, write_id=write_id)

    @classmethod
    async def delete(
        cls, key: str, prop: str, *, caller: Caller | None = None, write_id: str | None = None
    ) -> None:
        """Remove `prop`.

        Raises NotFoundError, PropertyNotFoundError, PermissionDeniedError (needs delete).
        """
        await current_node().delete(cls, key, prop, caller=caller, write_id=write_id)

    @classmethod
    async def reset(
        cls, key: str, *, caller: Caller | None = None, write_id: str | None = None
    ) -> None:
        """Run on_mount again and replace the whole state (and per-key ACL and TTL) with it.

        Raises NotFoundError, PermissionDeniedError (needs reset), and whatever
        on_mount raises.
        """
        await current_node().reset(cls, key, caller=caller, write_id=write_id)

    @classmethod
    async def append(
        cls,
        key: str,
        prop: str,
        item: Any,
        *,
        max_len: int | None = None,
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> None:
        """Append `item` to the list `prop` atomically (a missing one starts empty).

        With `max_len`, the oldest items beyond it are dropped. Raises
        NotFoundError, PermissionDeniedError (needs write), InvalidValueError
        (also if `prop` holds no list), StateTooLargeError.
        """
        await current_node().append(
            cls, key, prop, item, max_len=max_len, caller=caller, write_id=write_id
        )

    @classmethod
    async def increment(
        cls,
        key: str,
        prop: str,
        by: int | float = 1,
        *,
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> JSON:
        """Add `by` to the number `prop` atomically (a missing one starts at 0); return the result.

        Raises NotFoundError, PermissionDeniedError (needs write), InvalidValueError
        (also if `prop` holds no number).
        """
        return await current_node().increment(cls, key, prop, by, caller=caller, write_id=write_id)

    @classmethod
    async def update(
        cls,
        key: str,
        prop: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = DEFAULT,
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> JSON:
        """Replace `prop` with `fn(current value)` atomically, retrying if another write won.

        `fn` may run more than once, so it should have no side effects. Without
        `default`, a missing property raises PropertyNotFoundError. Returns the
        new (frozen) value. Raises NotFoundError, PermissionDeniedError (needs read
        and write), InvalidValueError, StateTooLargeError.
        """
        return await current_node().update(
            cls, key, prop, fn, default=default, caller=caller, write_id=write_id
        )

    @classmethod
    async def call(
        cls,
        key: str,
        action: str,
        args: Mapping[str, Any] | None = None,
        *,
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> JSON:
        """Run the spec's action named `action` with `args` (argument name -> value) and
        return its result; see `livestate.action` and docs/rules.md.

        Raises InvalidValueError (no such action, arguments that do not fit its
        signature, writes that do not fit the schema), PermissionDeniedError
        (public callers need read), NotFoundError, and whatever the action raises;
        an action that raises writes nothing.
        """
        return await current_node().call(cls, key, action, args, caller=caller, write_id=write_id)

    @classmethod
    async def start(cls, key: str) -> None:
        """Start the live state for `key` if absent, without attaching.

        With no client, its TTL countdown starts at once. Raises what on_mount raises.
        """
        await current_node().start(cls, key)

    @classmethod
    async def stop(cls, key: str, *, caller: Caller | None = None) -> None:
        """End the live state now; attached clients get a `stopped` change and are detached.

        Raises NotFoundError, PermissionDeniedError (public callers need delete).
        """
        await current_node().stop(cls, key, caller=caller)
