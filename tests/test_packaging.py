"""Every third-party module kbsearch imports is declared in pyproject.toml."""

import ast
import importlib.metadata
import re
import sys
import tomllib

from .conftest import ROOT


def declared() -> set[str]:
    """Return the normalised names of the distributions pyproject.toml asks for."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += extra
    return {normalise(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0]) for spec in wanted}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> set[str]:
    """Return the top-level modules that the kbsearch package imports."""
    found = set()
    for path in (ROOT / "kbsearch").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - {"kbsearch", "__future__"} - set(sys.stdlib_module_names)


def test_every_imported_distribution_is_declared():
    distributions = importlib.metadata.packages_distributions()
    names = declared()
    missing = {
        module: distributions.get(module, ["(not installed)"])
        for module in sorted(imported_modules())
        if not any(normalise(d) in names for d in distributions.get(module, []))
    }
    assert missing == {}
