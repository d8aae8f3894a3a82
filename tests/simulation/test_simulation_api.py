"""The simulation modules declare their public names: ``__all__`` lists exactly them."""

import ast
import importlib
import inspect

import pytest


@pytest.mark.parametrize("name", ["lowdose", "geometry", "projector"])
def test_public_names_are_declared(name):
    module = importlib.import_module(f"lidplug.simulation.{name}")
    assert hasattr(module, "__all__"), f"{module.__name__} lacks __all__"
    defined = set()  # top-level definitions of the module itself, not what it imports
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
    assert sorted(module.__all__) == sorted(n for n in defined if not n.startswith("_"))
