"""rtclient's public surface: ``__all__`` and the exception tree (cf. httpx's export test)."""

from __future__ import annotations

import ast
import inspect
import re
import tomllib
from pathlib import Path

import rtclient
from rtclient import errors

INIT = Path(rtclient.__file__)
INCLUDED_PRIVATE = {"__version__"}


def _is_public(name: str) -> bool:
    return not name.startswith("_") or name in INCLUDED_PRIVATE


def names_bound_in_init() -> set[str]:
    """Names imported or assigned at the top level of rtclient/__init__.py."""
    names: set[str] = set()
    for node in ast.parse(INIT.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return {n for n in names if _is_public(n) and n != "__all__"}


def test_all_is_sorted_without_duplicates() -> None:
    assert rtclient.__all__ == sorted(set(rtclient.__all__))


def test_all_equals_names_defined_in_init() -> None:
    assert set(rtclient.__all__) == names_bound_in_init()


def test_all_equals_public_non_module_attributes() -> None:
    public = {
        name
        for name, value in vars(rtclient).items()
        if _is_public(name) and not inspect.ismodule(value)
    }
    assert set(rtclient.__all__) == public


def test_every_name_in_all_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from rtclient import *", namespace)
    for name in rtclient.__all__:
        assert getattr(rtclient, name) is namespace[name]


def test_version_is_a_string() -> None:
    assert isinstance(rtclient.__version__, str)


def test_version_comes_from_pyproject() -> None:
    pyproject = tomllib.loads((INIT.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert rtclient.__version__ == pyproject["project"]["version"]


# -- the exception tree ------------------------------------------------------------------


def docstring_tree() -> dict[str, str | None]:
    """Parse the tree drawn in rtclient.errors' docstring into {class: parent}."""
    doc = errors.__doc__ or ""
    lines = doc.split("The tree::", 1)[1].splitlines()
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    started = False
    for line in lines:
        if not line.strip():
            if started:
                break
            continue
        if not line.startswith("    "):
            break
        started = True
        match = re.match(r"(?P<prefix>[\s│├└─]*)(?P<name>[A-Za-z_]\w*)", line)
        assert match, line
        depth = len(match["prefix"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match["name"]] = stack[-1][1] if stack else None
        stack.append((depth, match["name"]))
    return parents


def exception_classes() -> dict[str, type[BaseException]]:
    return {
        name: obj
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
    }


def test_docstring_tree_parses() -> None:
    tree = docstring_tree()
    assert tree["RtClientError"] is None
    assert tree["Unauthorized"] == "AuthError"
    assert tree["ConnectionLost"] == "TransportError"
    assert len(tree) >= 10


def test_every_exception_derives_from_rtclient_error() -> None:
    classes = exception_classes()
    assert "RtClientError" in classes
    for name, cls in classes.items():
        assert issubclass(cls, errors.RtClientError), name


def test_every_exception_is_in_the_docstring_tree_under_its_base() -> None:
    tree = docstring_tree()
    classes = exception_classes()
    assert set(tree) == set(classes)
    for name, cls in classes.items():
        if cls is errors.RtClientError:
            continue
        assert tree[name] == cls.__bases__[0].__name__, name


def test_errors_all_lists_every_exception() -> None:
    assert set(errors.__all__) == set(exception_classes())


def test_every_exception_is_exported_from_the_package() -> None:
    for name, cls in exception_classes().items():
        assert getattr(rtclient, name) is cls
        assert name in rtclient.__all__
