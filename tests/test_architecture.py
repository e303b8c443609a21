"""Package structure: no import cycles, error types, the public API, a cheap ``import sv2a``.

The import graph is read from the source with :mod:`ast`, so it holds every import a module
can run: module level and inside functions, absolute and relative. Imports under
``if TYPE_CHECKING:`` never run and are left out; ``importlib.import_module`` calls with a
string (the lazy ``__getattr__`` of ``sv2a/__init__``) are not imports and are not seen.

An edge ``a -> b`` means that importing or running ``a`` runs the code of ``b``:

* ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``
  (its ``__init__`` when ``pkg`` is a package);
* importing ``p.q.m`` also runs ``p/__init__`` and ``p/q/__init__``: edges to them, except
  to the packages the importer itself belongs to (those are already being imported);
* a package ``__init__`` that imports its own sub-modules (to register or re-export them)
  runs them, so those edges count too: a module that imports the package depends on every
  sub-module the ``__init__`` imports. Without these edges a cycle such as
  ``x -> pkg``, ``pkg/__init__ -> pkg.child``, ``pkg.child -> x`` would be invisible.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import sv2a
import sv2a.errors

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sv2a"


# ------------------------------------------------------------------------------ the graph
def _module_names() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _module_names()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement outside ``if TYPE_CHECKING:`` blocks, at any depth."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _targets(importer: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The sv2a modules whose code an import statement in ``importer`` runs (or needs)."""
    if isinstance(node, ast.Import):
        named = {a.name for a in node.names}
        found: set[str] = set()
    else:
        if node.level:
            # the package a relative import starts from: the module's own package, or
            # the package itself for an __init__
            base = importer.split(".") if _is_package(importer) else importer.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        named = set()
        found = set()
        for alias in node.names:
            sub = f"{mod}.{alias.name}"
            if sub in MODULES:
                named.add(sub)  # `from pkg import submodule`
            else:
                found.add(mod)  # a name defined in `mod` (a module or a package __init__)
        named |= found
    out: set[str] = set()
    own_packages = set(_ancestors(importer)) | ({importer} if _is_package(importer) else set())
    for target in named:
        if target.split(".")[0] != "sv2a":
            continue
        # importing a.b.c runs a/__init__ and a/b/__init__ first, unless they are packages
        # the importer itself belongs to (those are already being imported)
        chain = [*_ancestors(target), target]
        for name in chain:
            if name not in MODULES:
                continue
            if name in own_packages and name != target:
                continue
            out.add(name)
    out.discard(importer)
    return out


def import_graph() -> dict[str, dict[str, list[int]]]:
    """importer -> {imported module -> [line numbers]} over the whole package."""
    graph: dict[str, dict[str, list[int]]] = {m: {} for m in MODULES}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _runtime_imports(tree):
            for target in _targets(name, node):
                graph[name].setdefault(target, []).append(node.lineno)
    return graph


def strongly_connected(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        comps.append(sorted(comp))
    return sorted(comps)


def _describe(graph: dict[str, dict[str, list[int]]], comp: list[str]) -> str:
    inside = set(comp)
    lines = [f"cycle among {', '.join(comp)}:"]
    for m in comp:
        for t, linenos in sorted(graph[m].items()):
            if t in inside:
                where = MODULES[m].relative_to(ROOT)
                lines.append(f"    {m} -> {t}  ({where}:{','.join(map(str, linenos))})")
    return "\n".join(lines)


def test_graph_reader_resolves_imports():
    # the reader itself: relative, function-local and `from . import module` forms
    g = import_graph()
    assert "sv2a.errors" in g["sv2a.tacs"]  # from .errors import ...
    assert "sv2a.regions" in g["sv2a.atlas"]  # from .regions import region_name
    assert "sv2a.pet" in g["sv2a.validate"]  # function-local import
    assert "sv2a.atomic" in g["sv2a.io"]
    # the package __init__ imports errors and _lazy (its children); the lazy names are not
    # imports
    assert set(g["sv2a"]) == {"sv2a._lazy", "sv2a.errors"}
    # a module outside a package depends on the package __init__ it imports from
    assert "sv2a.models" in g["sv2a.figures"]
    # a sibling package's sub-module runs that package's __init__ first
    if "sv2a.pipeline.participant" in g:
        assert any(t.startswith("sv2a.") for t in g["sv2a.pipeline.participant"])
    tree = ast.parse("if TYPE_CHECKING:\n    from . import x\nelse:\n    import sv2a.y\n")
    assert [type(n).__name__ for n in _runtime_imports(tree)] == ["Import"]


def test_no_import_cycles():
    graph = import_graph()
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(graph, c) for c in cycles)


def test_atlas_and_tacs_do_not_import_each_other():
    graph = import_graph()
    assert "sv2a.tacs" not in graph["sv2a.atlas"]
    assert "sv2a.atlas" not in graph["sv2a.tacs"]


# ------------------------------------------------------------------------------ errors
_BUILTIN_EXCEPTIONS = tuple(
    v for v in vars(builtins).values()
    if isinstance(v, type) and issubclass(v, BaseException) and v not in (
        BaseException, Exception)
)


def _sv2a_error_classes() -> list[type[BaseException]]:
    return [c for _, c in inspect.getmembers(sv2a.errors, inspect.isclass)
            if issubclass(c, sv2a.errors.Sv2aError) and c is not sv2a.errors.Sv2aError]


def test_every_error_also_derives_from_a_builtin():
    classes = _sv2a_error_classes()
    assert len(classes) >= 12
    for cls in classes:
        assert issubclass(cls, _BUILTIN_EXCEPTIONS), (
            f"{cls.__name__} must also derive from a built-in exception (ValueError, OSError, "
            "RuntimeError ...) so generic handlers catch it")


def test_error_builtins_match_their_meaning():
    e = sv2a.errors
    for cls in (e.FrameTimingError, e.MetadataError, e.UnitsError, e.ShapeMismatchError,
                e.RegionError, e.InputFunctionError, e.ModelError, e.DataError,
                e.DesignError, e.ConfigError):
        assert issubclass(cls, ValueError), cls
    assert issubclass(e.BIDSError, OSError)
    assert issubclass(e.FitError, RuntimeError)
    assert issubclass(e.Sv2aWarning, UserWarning)
    assert not issubclass(e.Sv2aWarning, e.Sv2aError)
    # a generic handler catches a real one
    import pytest

    with pytest.raises(ValueError, match="unknown activity unit"):
        sv2a.units.activity_factor("furlongs/mL")


# ------------------------------------------------------------------------------ public API
def test_dir_lists_the_public_api():
    assert set(sv2a.__all__) <= set(dir(sv2a))
    assert len(sv2a.__all__) == len(set(sv2a.__all__))
    for name in ("fit", "parametric_maps", "load_pet", "load_blood", "load_atlas", "Atlas",
                 "DynamicPET", "InputFunction", "FrameSchedule", "extract_tacs",
                 "tacs_from_arrays", "frames_of", "Sv2aError", "__version__", "models",
                 "phantom", "longitudinal", "report", "pipeline", "io"):
        assert name in sv2a.__all__, name


def test_every_public_name_resolves():
    for name in sv2a.__all__:
        assert getattr(sv2a, name) is not None, name
    assert sv2a.load_pet is sv2a.io.load_pet
    assert sv2a.DynamicPET is sv2a.io.DynamicPET
    assert sv2a.load_blood is sv2a.io.load_blood


def test_import_is_cheap():
    # `import sv2a` must not pull in the scientific stack: the CLI starts fast and a user
    # pays only for what is used.
    code = ("import sys, sv2a; heavy = ('numpy', 'xarray', 'pandas', 'scipy', 'matplotlib', "
            "'statsmodels', 'nibabel'); print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


# ------------------------------------------------------------------------------ documentation
def _public_functions():
    """(path, line, qualified name, ast node) of every public function and public method."""
    for path in sorted((ROOT / "sv2a").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                yield path, node, node.name
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                for sub in node.body:
                    if isinstance(sub, ast.FunctionDef) and not sub.name.startswith("_"):
                        yield path, sub, f"{node.name}.{sub.name}"


def test_public_functions_document_parameters_and_returns():
    # NumPy-style sections on every public function with arguments / a return value
    # (properties are documented as attributes of their class)
    missing = []
    for path, fn, name in _public_functions():
        decos = {getattr(d, "id", getattr(d, "attr", "")) for d in fn.decorator_list}
        if decos & {"property", "setter", "overload"}:
            continue
        doc = ast.get_docstring(fn) or ""
        args = [a for a in fn.args.args + fn.args.kwonlyargs if a.arg not in ("self", "cls")]
        if args and "Parameters" not in doc:
            missing.append(f"{path.relative_to(ROOT)}:{fn.lineno} {name}: Parameters")
        ret = fn.returns
        returns_none = ret is None or (isinstance(ret, ast.Constant) and ret.value is None)
        if not returns_none and "Returns" not in doc and "Yields" not in doc:
            missing.append(f"{path.relative_to(ROOT)}:{fn.lineno} {name}: Returns")
    assert not missing, "\n".join(missing)


def test_docs_do_not_cite_documents_outside_the_repository():
    # a user's clone has only the package: state the fact or cite the paper
    pattern = re.compile(r"\b(DESIGN|DOMAIN)\s*§|\bDESIGN\.md|\bDOMAIN\.md|\bissue \d+|§\d")
    hits = []
    for path in sorted((ROOT / "sv2a").rglob("*.py")):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_every_model_has_a_runnable_example():
    import doctest

    import sv2a.models as models

    for name in models.available():
        cls = models.get(name)
        examples = doctest.DocTestParser().get_examples(cls.__doc__ or "")
        assert examples, f"{name}: no Examples in the class docstring"
