"""A userspace emulator of the Linux scheduler, rseq and the mm lifecycle.

    from emulator import Machine
    from emulator.uapi.libc import pthread_create, pthread_join, usleep

    def main():
        ...
        return 0

    assert Machine(nr_cpus=8, variants=["v6.3"], seed=1).run(main) == 0
"""

from .errors import EmulationFailure, UsageError

__version__ = "0.1.0"
__all__ = ["Machine", "UsageError", "EmulationFailure", "__version__"]


def __getattr__(name):
    # The machine is imported when first asked for, so that ``python -m
    # emulator`` handles Ctrl-C (emulator.interrupt) before its heavy imports.
    if name == "Machine":
        from .machine import Machine
        return Machine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
