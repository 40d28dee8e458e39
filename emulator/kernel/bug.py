"""include/asm-generic/bug.h: WARN_ON() and WARN_ON_ONCE().

The kernel prints a splat and goes on; the model stops the run with a
KernelBug naming the condition (a departure: a warning is a finding here, and
the code after it, which the kernel would go on to run, is not explored).
Both return the condition's truth, as in C, for ``if (WARN_ON_ONCE(...))``.
"""

import sys

from ..errors import KernelBug


def WARN_ON(condition, what):
    if condition:
        raise KernelBug(f"WARNING: WARN_ON({what})", function=sys._getframe(1).f_code.co_name)
    return False


def WARN_ON_ONCE(condition, what):
    if condition:
        raise KernelBug(f"WARNING: WARN_ON_ONCE({what})", function=sys._getframe(1).f_code.co_name)
    return False
