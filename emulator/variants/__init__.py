"""Variants: one class per kernel version or patch of a subsystem.

A machine has one variant per subsystem (``mm_cid``, ``page_alloc``, ...):
the ones selected, and for every other subsystem its default (``DEFAULTS``).

A variant's methods carry the kernel's function names; the kernel model calls
them only from the kernel's own call sites, so a subclass that overrides one
changes it at every call site.  Variants are found by name in the registry or
loaded from a file that derives from a registered one:

    from emulator.variants import get_variant

    class MovesCidOnMigrate(get_variant("seed-001")):
        name = "moves-cid"
        def sched_mm_cid_migrate_to(self, dst_rq, t): ...
"""

import importlib
import os

from ..errors import UsageError

_registry = {}
_builtin_modules = ("mm_cid_v6_3", "mm_cid_seed_001", "mm_cid_v6_4", "mm_cid_v6_13", "mm_cid_v6_14", "mm_cid_seed_000", "mm_cid_v7_0", "mm_cid_seed_003",
                    "page_alloc_v5_19", "page_alloc_seed_002", "page_alloc_v6_0", "page_alloc_v6_2",
                    "page_alloc_v6_11",
                    "lazy_tlb_refcount", "lazy_tlb_seed_004_shoot_lazies", "lazy_tlb_shootdown_v6_4",
                    "lazy_tlb_seed_004_generation")
_loaded_builtins = False

# The variant a machine has for a subsystem when none of that subsystem is
# selected, in the order the kernel builds them.
DEFAULTS = {"mm_cid": "v6.3", "page_alloc": "v5.19", "lazy_tlb": "refcount"}


def register(cls):
    """Class decorator: add *cls* to the registry under ``cls.name``."""
    if not cls.name:
        raise UsageError(f"variant class {cls.__name__} has no name")
    _registry[cls.name] = cls
    return cls


def _load_builtins():
    global _loaded_builtins
    if not _loaded_builtins:
        _loaded_builtins = True
        for mod in _builtin_modules:
            importlib.import_module(f"{__name__}.{mod}")


def registered(subsystem=None):
    """Registered variant classes by name, in registration order (those of
    *subsystem* only, if given)."""
    _load_builtins()
    return {name: cls for name, cls in _registry.items()
            if subsystem is None or cls.subsystem == subsystem}


def select_variants(specs=()):
    """The variant class of each subsystem, in DEFAULTS order: the one of
    *specs* (names, files or classes; at most one per subsystem) that is of
    that subsystem, else its default."""
    chosen = {}
    for spec in specs:
        cls = load_variant(spec)
        if cls.subsystem not in DEFAULTS:
            raise UsageError(f"variant {cls.name!r} is of no known subsystem ({cls.subsystem!r}; "
                             f"known: {', '.join(DEFAULTS)})")
        if cls.subsystem in chosen and chosen[cls.subsystem] is not cls:
            raise UsageError(f"one {cls.subsystem} variant per machine, not both "
                             f"{chosen[cls.subsystem].name!r} and {cls.name!r}")
        chosen[cls.subsystem] = cls
    return {sub: chosen.get(sub) or get_variant(default) for sub, default in DEFAULTS.items()}


def get_variant(name):
    """The registered variant class called *name*."""
    _load_builtins()
    try:
        return _registry[name]
    except KeyError:
        raise UsageError(f"unknown variant {name!r}; known: {', '.join(_registry)}") from None


def load_variant(spec):
    """A variant class from a registry name or from a ``.py`` file path."""
    if isinstance(spec, type):
        return spec
    if not isinstance(spec, str) or not spec:
        raise UsageError(f"a variant is a registered name or a .py file, not {spec!r}")
    if spec.endswith(".py") or os.sep in spec:
        return _load_file(spec)
    return get_variant(spec)


def _load_file(path):
    from ..pyfile import leaf_classes
    from .base import Variant
    _load_builtins()
    # The most derived class defined in the file is the patch.
    leaves = leaf_classes(path, Variant, "emulator_patch_", "variant")
    if len(leaves) != 1:
        raise UsageError(f"variant file {path!r} must define exactly one variant class "
                         f"deriving from a registered variant (found {len(leaves)})")
    cls = leaves[0]
    cls.source = path
    if cls.name in _registry and _registry[cls.name] is not cls and _registry[cls.name].source is None:
        raise UsageError(f"variant file {path!r} reuses the registered name {cls.name!r}")
    _registry[cls.name] = cls
    return cls
