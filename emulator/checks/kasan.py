"""KASAN-like use-after-free detection for kernel objects (mm_struct first).

A freed object is *poisoned*: its class is switched to a poison class whose
every attribute access raises `UseAfterFree`, naming where the object was
allocated and freed and where the bad access came from.  Comparing pointers
(``is``/``==``) is not an access, as in C.
"""

import os
import sys
import sysconfig

from ..errors import UseAfterFree

# Frames that are machinery, not the code under test: the engine, the checks,
# the standard library and installed packages (pytest, greenlet).
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OWN_MACHINERY = (os.path.join(_HERE, "engine.py"), os.path.join(_HERE, "machine.py"),
                  os.path.join(_HERE, "checks"))
_LIBRARIES = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"])


def _is_machinery(filename):
    if filename.startswith("<"):           # <frozen runpy>, <string>
        return True
    if filename.startswith(_HERE):
        return filename.startswith(_OWN_MACHINERY)
    return filename.startswith(_LIBRARIES)


# id() of a code object -> (its function's name, or None for machinery; the
# code object, kept so that its id stays its own): the walk below runs at
# every allocation and free, over the same few hundred functions.  Keyed by
# id(), not by the code object, whose hash is computed anew at every lookup
# (over its constants and names: a few hundred ns for a long function).
_code_names = {}


def call_site(skip=2, depth=6):
    """The innermost function names on the Python stack that belong to the
    kernel model, a variant, a patch file or a test."""
    names = []
    frame = sys._getframe(skip)
    known = _code_names
    while frame is not None and len(names) < depth:
        code = frame.f_code
        try:
            name = known[id(code)][0]
        except KeyError:
            name = None if _is_machinery(code.co_filename) else code.co_name
            known[id(code)] = (name, code)
        if name is not None and name not in names:
            names.append(name)
        frame = frame.f_back
    return " <- ".join(names) or "?"


class Site:
    """Where something happened: virtual time, CPU, task, kernel call chain."""

    __slots__ = ("time", "cpu", "task", "stack")

    def __init__(self, kernel, skip=2):
        self.time = kernel.engine.now
        self.cpu = kernel.cpu
        self.task = repr(kernel.cur)
        self.stack = call_site(skip + 1)

    def __str__(self):
        return f"{self.stack} by {self.task} on CPU {self.cpu} at {self.time} ns"


_poison_classes = {}


def _poison_class(cls):
    poisoned = _poison_classes.get(cls)
    if poisoned is None:
        def __getattribute__(self, name):
            if name in ("__class__", "__dict__"):
                return object.__getattribute__(self, name)
            d = object.__getattribute__(self, "__dict__")
            raise UseAfterFree(
                f"KASAN: use-after-free: read of {d['_kasan_what']}.{name}",
                f"  accessed by {call_site(2)}\n"
                f"  allocated by {d['_kasan_alloc']}\n"
                f"  freed by {d['_kasan_free']}")

        def __setattr__(self, name, value):
            d = object.__getattribute__(self, "__dict__")
            raise UseAfterFree(
                f"KASAN: use-after-free: write of {d['_kasan_what']}.{name}",
                f"  accessed by {call_site(2)}\n"
                f"  allocated by {d['_kasan_alloc']}\n"
                f"  freed by {d['_kasan_free']}")

        def __repr__(self):
            d = object.__getattribute__(self, "__dict__")
            return f"<freed {d['_kasan_what']}>"

        poisoned = type(f"Freed{cls.__name__}", (cls,), {
            "__getattribute__": __getattribute__,
            "__setattr__": __setattr__,
            "__repr__": __repr__,
        })
        _poison_classes[cls] = poisoned
    return poisoned


def kasan_record_alloc(obj, kernel, what):
    obj.__dict__["_kasan_alloc"] = Site(kernel)
    obj.__dict__["_kasan_what"] = what


def kasan_poison(obj, kernel):
    """Free *obj*: every later access raises UseAfterFree."""
    d = obj.__dict__
    d["_kasan_free"] = Site(kernel)
    obj.__class__ = _poison_class(type(obj))


def is_freed(obj):
    return "_kasan_free" in object.__getattribute__(obj, "__dict__")
