"""What the stateful machines' rules share (emulator/explore/stateful.py, the
mm lifecycle; stateful_lazy_tlb.py, the lazy-TLB rules): the step record a
replay key carries, the run-a-little-after draw, and the CPU hotplug rule of
the subsystems hotplug concerns."""

import functools

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

# Each rule lets the machine run a little after it (Hypothesis shrinks this to 0).
THEN = st.one_of(st.just(0), st.integers(1, 2_000_000))


def recorded(rule):
    """A rule that notes its call (name, arguments) in the example's steps,
    which are what a replay key carries."""
    @functools.wraps(rule)
    def step(self, **kwargs):
        self.steps.append([rule.__name__, {key: sorted(value) if isinstance(value, (set, frozenset))
                                           else value for key, value in kwargs.items()}])
        return rule(self, **kwargs)
    return step


class CpuHotplugRules:
    """The rule of the machines whose subsystem CPU hotplug concerns."""

    @precondition(lambda self: self.has_live())
    @rule(who=st.integers(0, 63), cpu=st.integers(0, 7), online=st.booleans(), then=THEN)
    @recorded
    def cpu_online(self, who, cpu, online, then):
        """*who* writes 0 or 1 to cpuN/online (the last online CPU refuses)."""
        self.pick(who).give(("call", self.m.kernel.sys_cpu_online_write,
                             (cpu % self.nr_possible, int(online))))
        self._then(then)
