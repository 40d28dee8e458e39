"""include/linux/cpumask.h: CPU masks as Python ints.

A mask is an int whose bit *n* is CPU *n*.  Python does the word-wise work in
C, so and/or/weight/first-bit cost O(nr_cpus / 64) machine words, which keeps
placement and bitmap allocation flat up to 1024 CPUs.  `Cpumask` is the
mutable form used where the kernel modifies a mask in place (``mm_cidmask``).
"""


def mask_of(cpus):
    mask = 0
    for cpu in cpus:
        mask |= 1 << cpu
    return mask


def cpus_of(mask):
    """The CPUs of *mask* in increasing order (for_each_cpu)."""
    cpus = []
    while mask:
        low = mask & -mask
        cpus.append(low.bit_length() - 1)
        mask ^= low
    return cpus


for_each_cpu = cpus_of


def cpumask_first(mask):
    """Lowest set bit, or -1 for an empty mask (the kernel returns nr_cpu_ids)."""
    return (mask & -mask).bit_length() - 1


def cpumask_first_zero(mask):
    """Lowest clear bit."""
    return (~mask & (mask + 1)).bit_length() - 1


def find_first_zero_bit(bits, size):
    """include/linux/find.h: the first clear bit of the bitmap *bits* below
    *size*, or *size*."""
    return min(cpumask_first_zero(bits), size)


def cpumask_weight(mask):
    return mask.bit_count()


class Cpumask:
    """A mask modified in place: ``bits`` is the int."""

    __slots__ = ("bits",)

    def __init__(self, bits=0):
        self.bits = bits

    def __repr__(self):
        return f"Cpumask({cpus_of(self.bits)})"
