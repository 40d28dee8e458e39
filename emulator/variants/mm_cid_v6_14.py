"""v6.14: 02d954c0fdf9 "sched: Compact RSEQ concurrency IDs with reduced threads
and affinity" (Mathieu Desnoyers; tip sched/urgent 2025-02-18, Fixes
7e019dcc470f; lore 20250210153253.460471-2-gmonaco@redhat.com; stable
6.13.y as "[ Upstream commit 02d954c0fdf91845169cdacc7405b120f90afe01 ]").

On top of v6.13 (7e019dcc470f), one function changes, ``__mm_cid_try_get()``
(mm_cid.md 3.4):

- it first lowers ``mm->max_nr_cid`` to ``min(mm->nr_cpus_allowed,
  mm->mm_users)`` when threads have exited or the allowed CPUs shrank
  (``atomic_try_cmpxchg`` loop), so that expansion starts again from there;
- it re-uses this CPU's ``recent_cid`` only if it is below that
  ``max_nr_cid``; otherwise it expands, then takes the first zero bit.

So a CPU's stale high recent_cid is no longer handed back once the mm has
fewer threads, but nothing clears a cid a CPU still holds: compaction still
waits for ``task_mm_cid_work``, which is still queued only from the tick when
a thread of the mm is current (v6.4's task_tick_mm_cid(), inherited).

Text copied from the stable 6.13 backport and from the same patch as posted in
Gabriele Monaco's series (v2 3/4, v3 1/3), whose sched.h hunks are identical.
The other mm_cid.md 3.4 commits of the v6.14 cycle change no behaviour the
model has (sched_tick() passes ``rq->donor``, which is ``rq->curr`` without
proxy execution).  Departures: as v6.13.
"""

from ..kernel.cpumask import cpumask_first_zero
from ..kernel.locking import (
    READ_ONCE, atomic_read, cpu_relax, cpumask_test_and_set_cpu, try_cmpxchg,
)
from . import register
from .mm_cid_v6_4 import mm_cid_is_unset
from .mm_cid_v6_13 import MmCidV6_13


@register
class MmCidV6_14(MmCidV6_13):
    name = "v6.14"
    copies = "02d954c0fdf9 sched: Compact RSEQ concurrency IDs with reduced threads and affinity (v6.14)"

    def _mm_cid_try_get(self, t, mm):
        """__mm_cid_try_get()"""
        cidmask = self.mm_cidmask(mm)
        pcpu_cid = mm.pcpu_cid[self.k.cpu]
        # After shrinking the number of threads or reducing the number
        # of allowed cpus, reduce the value of max_nr_cid so expansion
        # of cid allocation will preserve cache locality if the number
        # of threads or allowed cpus increase again.
        max_nr_cid = atomic_read(mm.max_nr_cid)
        while True:
            allowed_max_nr_cid = min(READ_ONCE(mm, "nr_cpus_allowed"), atomic_read(mm.mm_users))
            if not max_nr_cid > allowed_max_nr_cid:
                break
            # atomic_try_cmpxchg loads previous mm->max_nr_cid into max_nr_cid.
            ok, max_nr_cid = try_cmpxchg(mm.max_nr_cid, "counter", max_nr_cid, allowed_max_nr_cid)
            if ok:
                max_nr_cid = allowed_max_nr_cid
                break
        # Try to re-use recent cid. This improves cache locality.
        cid = READ_ONCE(pcpu_cid, "recent_cid")          # __this_cpu_read()
        if not mm_cid_is_unset(cid) and cid < max_nr_cid and \
                not cpumask_test_and_set_cpu(cid, cidmask):
            return cid
        # Expand cid allocation if the maximum number of concurrency
        # IDs allocated (max_nr_cid) is below the number cpus allowed
        # and number of threads. Expanding cid allocation as much as
        # possible improves cache locality.
        cid = max_nr_cid
        while cid < READ_ONCE(mm, "nr_cpus_allowed") and cid < atomic_read(mm.mm_users):
            # atomic_try_cmpxchg loads previous mm->max_nr_cid into cid.
            ok, cid_found = try_cmpxchg(mm.max_nr_cid, "counter", cid, cid + 1)
            if not ok:
                cid = cid_found
                continue
            if not cpumask_test_and_set_cpu(cid, cidmask):
                return cid
        # Find the first available concurrency id.
        # Retry finding first zero bit if the mask is temporarily
        # filled. This only happens during concurrent remote-clear
        # which owns a cid without holding a rq lock.
        while True:
            cid = cpumask_first_zero(READ_ONCE(cidmask, "bits"))
            if cid < READ_ONCE(mm, "nr_cpus_allowed"):
                break
            cpu_relax()
        if cpumask_test_and_set_cpu(cid, cidmask):
            return -1
        return cid
