"""A user's Python file, a patch variant or a workload, loaded as a module."""

import importlib.util
import os
import re
import sys

from .errors import UsageError


def leaf_classes(path, base, prefix, what):
    """The classes deriving from *base*, with a ``name``, that the file at
    *path* defines and none of them derives from (the most derived: the
    patch, the workload).  *what* names the file in the errors."""
    if not os.path.isfile(path):
        raise UsageError(f"{what} file {path!r} does not exist")
    modname = prefix + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{what} file {path!r} failed to load: {type(exc).__name__}: {exc}") from None
    found = [obj for obj in vars(module).values()
             if isinstance(obj, type) and issubclass(obj, base)
             and obj.__module__ == modname and obj.name]
    return [c for c in found if not any(o is not c and issubclass(o, c) for o in found)]
