"""Every public function and class of the three packages has a docstring (naming the statement it implements)."""

import importlib
import inspect
import pkgutil

import pytest


def _public_objects():
    for pkg in ("theory", "toy_models", "verify"):
        root = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(root.__path__, pkg + "."):
            if info.name.endswith("__main__"):
                continue
            mod = importlib.import_module(info.name)
            for name, obj in vars(mod).items():
                if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == mod.__name__:
                    yield f"{mod.__name__}.{name}", obj


@pytest.mark.parametrize("name,obj", list(_public_objects()), ids=lambda x: x if isinstance(x, str) else "")
def test_public_object_has_a_docstring(name, obj):
    assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
