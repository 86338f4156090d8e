"""The board's state spec: what a card is, and the actions that are the only way to change one.

Browsers may only read (the ACL gives the group and the public `read`): every
change is an action, a method that runs on the server as the caller the
endpoint's `identify` established, from the visitor cookie; a page never says
who it is. So a page can add a card only as itself (`by` is stamped here), edit
or delete only its own cards, vote once per card, and move any card between the
three columns; and whatever it sends, the schema keeps every property in shape.

Trusted server code (the HTTP API, `worker.py`) calls the same actions through
`livestate.sync` with no caller, which the actions treat as the server itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from livestate import (
    ActionContext,
    InvalidValueError,
    LiveState,
    PermissionDeniedError,
    PropertyNotFoundError,
    action,
)

COLUMNS = ("todo", "doing", "done")
SERVER = "server"
"""The `by` of cards that trusted server code adds (no visitor identity is ever this word)."""

Column = Literal["todo", "doing", "done"]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=280)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
Identity = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
CardId = Annotated[str, msgspec.Meta(pattern="^[a-z0-9]{1,16}$")]


class Card(msgspec.Struct, forbid_unknown_fields=True):
    """A card's value: its text, its column, who added it and the name they go by."""

    text: Text
    column: Column
    by: Identity  # the author's identity, as the server knows it (SERVER for server code)
    name: Name  # the author's display name: what they call themselves, proof of nothing


class Board(LiveState):
    """A board per key: one property per card (`card:<id>`), one list of voters per card
    (`votes:<id>`), so that edits of different cards never overwrite each other."""

    ttl = 600.0
    acl: ClassVar[Mapping[str, Any]] = {"group": ["read"], "public": ["read"]}
    schema: ClassVar[Mapping[str, Any]] = {
        "title": Annotated[str, msgspec.Meta(min_length=1, max_length=80)],
        "card:*": Card,
        "votes:*": Annotated[list[Identity], msgspec.Meta(max_length=10_000)],
    }

    def on_mount(self, key: str) -> dict[str, Any]:
        return {
            "title": f"Board “{key}”",
            "card:welcome": new_card("Drag ideas here: add a card below.", SERVER, "livestate"),
        }

    @action
    def whoami(self, ctx: ActionContext) -> str | None:
        """The caller's identity, so the page can tell its own cards and votes."""
        return None if ctx.caller is None else ctx.caller.identity

    @action
    def add_card(
        self, ctx: ActionContext, text: Text, column: Column = "todo", name: Name = "Guest"
    ) -> str:
        """Add a card by the caller, in `column`; return its id (chosen here, not by the page)."""
        card_id = secrets.token_hex(4)
        ctx.put(f"card:{card_id}", new_card(_words(text), _author(ctx), name, column))
        return card_id

    @action
    def edit_card(self, ctx: ActionContext, card: CardId, text: Text) -> None:
        """Change the text of one of the caller's own cards."""
        found = _own_card(ctx, card, "edit")
        ctx.put(f"card:{card}", {**found, "text": _words(text)})

    @action
    def delete_card(self, ctx: ActionContext, card: CardId) -> None:
        """Delete one of the caller's own cards, and its votes."""
        _own_card(ctx, card, "delete")
        ctx.delete(f"card:{card}")
        if f"votes:{card}" in ctx.state:
            ctx.delete(f"votes:{card}")

    @action
    def move_card(self, ctx: ActionContext, card: CardId, column: Column) -> None:
        """Move any card to `column` (a team board: anyone moves; only the text is the author's)."""
        found = _card(ctx, card)
        if found["column"] != column:
            ctx.put(f"card:{card}", {**found, "column": column})

    @action
    def vote(self, ctx: ActionContext, card: CardId) -> int:
        """Vote for a card, or take the caller's vote back; return its number of votes."""
        voter = _author(ctx)
        _card(ctx, card)
        prop = f"votes:{card}"
        voters = ctx.state.get(prop, ())
        if voter in voters:
            ctx.put(prop, [other for other in voters if other != voter])
        else:
            ctx.append(prop, voter)
        return len(ctx.state[prop])


def new_card(text: str, by: str, name: str, column: str = "todo") -> dict[str, Any]:
    """A card's value (see Card)."""
    return {"text": text, "column": column, "by": by, "name": name}


def _author(ctx: ActionContext) -> str:
    """Who the caller is, as a card's `by`: its identity, or SERVER for trusted code."""
    if ctx.caller is None:
        return SERVER
    if ctx.caller.identity is None:
        raise PermissionDeniedError(
            "This connection has no visitor identity: open the board's page, which gives your "
            "browser one, and try again."
        )
    return ctx.caller.identity


def _card(ctx: ActionContext, card: str) -> Mapping[str, Any]:
    found: Mapping[str, Any] | None = ctx.state.get(f"card:{card}")
    if found is None:
        raise PropertyNotFoundError(f"There is no card {card!r} on this board any more.")
    return found


def _own_card(ctx: ActionContext, card: str, verb: str) -> Mapping[str, Any]:
    """The card, if the caller wrote it (trusted server code may touch any card)."""
    found = _card(ctx, card)
    if ctx.caller is not None and found["by"] != ctx.caller.identity:
        raise PermissionDeniedError(
            f"Only the author of a card may {verb} it; you may vote for it or move it."
        )
    return found


def _words(text: str) -> str:
    """The text without surrounding spaces; InvalidValueError if nothing is left."""
    words = text.strip()
    if not words:
        raise InvalidValueError("A card needs some text.")
    return words
