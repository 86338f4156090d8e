"""The public surface: a sorted, complete __all__, documented names, and the process wiring."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import livestate

SOURCE = Path(livestate.__file__).parent


PUBLIC = [
    "livestate",
    "livestate.asgi",
    "livestate.backends",
    "livestate.inspector",
    "livestate.pyview",
    "livestate.sync",
    "livestate.testing",
]


def isort_style(name: str) -> tuple[int, str]:
    """How __all__ is sorted (ruff's RUF022): constants, then classes, then the rest."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


@pytest.mark.parametrize("name", PUBLIC)
def test_all_is_sorted_and_complete(name: str) -> None:
    """Each public module's __all__ is sorted, names only what the module has, and names
    everything public that the module or its private modules define."""
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__, key=isort_style)
    assert all(hasattr(module, exported) for exported in module.__all__)
    own = (name + "._") if name != "livestate" else "livestate._"
    defined = {
        attribute
        for attribute, value in vars(module).items()
        if not attribute.startswith("_")
        and not inspect.ismodule(value)
        and (
            getattr(value, "__module__", None) == name
            or str(getattr(value, "__module__", "")).startswith(own)
        )
    }
    assert defined <= set(module.__all__), defined - set(module.__all__)


def test_the_public_modules_are_the_package_and_its_named_integrations() -> None:
    """Every other module is private (named with an underscore), as in httpx."""
    modules = {info.name for info in pkgutil.iter_modules([str(SOURCE)])}
    public = {name for name in modules if not name.startswith("_")}
    assert public <= {"asgi", "backends", "inspector", "pyview", "sync", "testing"}, public


def test_no_module_uses_another_modules_private_names() -> None:
    """No `from .x import _name`, and no `module._name` on an imported module."""
    found = []
    for path in SOURCE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    # A private module may be imported; a private name from a module may not.
                    if private and node.module is not None:
                        found.append(f"{path.name}: from {node.module} import {alias.name}")
                    modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                modules.update(alias.asname or alias.name for alias in node.names)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert found == []


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_has_a_docstring(name: str) -> None:
    """Every exported name, and every public method on an exported class, is documented."""
    module = importlib.import_module(name)
    missing = []
    for exported in module.__all__:
        value = getattr(module, exported)
        if (inspect.isclass(value) or inspect.isfunction(value)) and not inspect.getdoc(value):
            missing.append(exported)
        if inspect.isclass(value):
            for attribute, member in vars(value).items():
                if attribute.startswith("_") or (
                    not callable(member) and not isinstance(member, property | classmethod)
                ):
                    continue
                if not inspect.getdoc(getattr(value, attribute)):
                    missing.append(f"{exported}.{attribute}")
    assert missing == []


def test_exceptions_form_one_tree() -> None:
    """Every error is a LiveStateError, and the builtin bases promised by the docs hold."""
    assert issubclass(livestate.PropertyNotFoundError, KeyError)
    assert issubclass(livestate.PermissionDeniedError, PermissionError)
    assert issubclass(livestate.InvalidValueError, ValueError)
    for error in (
        livestate.NotFoundError,
        livestate.PropertyNotFoundError,
        livestate.PermissionDeniedError,
        livestate.InvalidValueError,
        livestate.StateTooLargeError,
        livestate.BackendUnavailableError,
    ):
        assert issubclass(error, livestate.LiveStateError)


def test_a_script_works_without_any_setup() -> None:
    """Without lifespan, the default node starts on first use (memory:// by default)."""
    script = textwrap.dedent(
        """
        import asyncio
        from livestate import LiveState

        class Hello(LiveState):
            def on_mount(self, key):
                return {"greeting": "hello " + key}

        async def main():
            async with await Hello.attach("world") as client:
                await Hello.append("world", "log", 1)
                print(client.state["greeting"], client.state["log"], client.version > 1)

        asyncio.run(main())
        asyncio.run(main())  # a second event loop gets a node of its own
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
        env={"LIVESTATE_URL": "memory://", "PATH": ""},
    )  # fmt: skip
    assert result.stdout.split("\n")[:2] == ["hello world [1] True"] * 2, result.stderr


async def test_lifespan_starts_and_closes_the_default_node() -> None:
    """livestate.lifespan makes a node current for the app and closes it on exit."""

    class Life(livestate.LiveState):
        pass

    async with livestate.lifespan(object()):
        node = livestate.current_node()
        client = await Life.attach("k")
        assert client.attached
    assert node.closed and not client.attached


def test_two_specs_may_not_share_a_name() -> None:
    """Two different specs with the same name would share state, so the second one fails."""

    class Unique(livestate.LiveState):
        pass

    try:
        type("Unique", (livestate.LiveState,), {"__module__": "elsewhere"})
    except livestate.InvalidValueError as error:
        assert "give one of them its own `name" in str(error)
    else:
        raise AssertionError("a second spec named 'Unique' was accepted")


def test_a_missing_backend_url_scheme_is_explained() -> None:
    """An unknown LIVESTATE_URL scheme names the choices."""
    try:
        livestate.Node("mongodb://x")
    except livestate.InvalidValueError as error:
        assert "use memory:// or redis://host:6379/0" in str(error)
    else:
        raise AssertionError("an unknown scheme was accepted")
