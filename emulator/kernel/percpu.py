"""include/linux/percpu.h: alloc_percpu() of a structure, one copy per
possible CPU, and per_cpu_ptr().

A per-CPU allocation is a mapping from CPU number to that CPU's copy:
``ptr[cpu]`` is ``per_cpu_ptr(ptr, cpu)``.  The kernel allocates every
possible CPU's copy at once; here a copy is made when it is first touched,
by the allocation's *make*, with the values every copy has when the caller's
initialisation is done (the structure's class gives them).  No reader can
tell the difference: a copy nobody touched yet is made, with those values,
by the first read as by the first write.  Only the cost differs: a fork at
128 CPUs makes the one or two copies its short life touches, not 128
(making and freeing 128 was about a fifth of a fork's CPU time in v6.13).

So a loop the kernel writes ``for_each_possible_cpu(cpu)`` over the copies
is ``for cpu in range(nr_cpu_ids): ptr[cpu]`` where it must see every CPU's
(it makes the missing ones), and ``touched(ptr)`` where a copy still in its
initial state has nothing to do or say (resetting the copies, looking for
cids held): the copies made so far, by CPU.
"""


class percpu(dict):
    """The copies of an alloc_percpu() for CPUs 0 to *nr* - 1, by CPU, made
    on first touch by ``make(cpu)``."""

    __slots__ = ("make", "nr")

    def __init__(self, make, nr):
        super().__init__()
        self.make = make
        self.nr = nr

    def __missing__(self, cpu):
        if not 0 <= cpu < self.nr:
            # per_cpu_ptr() of a CPU that is not possible: out of the allocation
            raise IndexError(f"per_cpu_ptr() of CPU {cpu}: {self.nr} possible")
        copy = self[cpu] = self.make(cpu)
        return copy

    def __iter__(self):
        raise TypeError("iterate a per-CPU allocation with touched(ptr) or over CPU numbers")

    def __repr__(self):
        return f"percpu({dict(sorted(self.items()))!r})"


def alloc_percpu(cls, nr):
    """alloc_percpu(type) on a machine of *nr* possible CPUs: *cls*() is a
    CPU's copy, as initialised."""
    return percpu(lambda cpu: cls(), nr)


def touched(ptr):
    """(cpu, copy) of the copies made so far, by CPU; () for no allocation."""
    return sorted(ptr.items()) if ptr else ()
