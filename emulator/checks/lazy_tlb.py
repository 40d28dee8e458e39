"""The lazy-TLB invariants: nothing uses an mm after its free, whoever frees it.

    P6  no use after free, at the free: when __mmdrop() frees an mm (past
        cleanup_lazy_tlbs(), or when a deferring variant frees it later), no
        CPU has it loaded (rq->loaded_mm: what switch_mm() last loaded), no
        online CPU's current task uses it as active_mm, no runqueue holds it
        as prev_mm.  The KASAN-like poisoning (checks/kasan.py) reports any
        later access; this reports the free itself, where the bug is;
    P8  balanced lazy references (variants whose lazy users hold mm_count
        references, ``refcounts_lazy``): no mmdrop_lazy_tlb() without an
        mmgrab_lazy_tlb() before it (checked at every drop) and, once quiet,
        the references each mm holds equal its lazy users (tasks without an
        mm whose active_mm it is, runqueues whose prev_mm it is) and its
        mm_count covers them (at least one per lazy reference, plus one if it
        has users);
    P9  shootdown coverage (variants that IPI lazy users away,
        ``shoots_lazies``): when cleanup_lazy_tlbs() starts, every CPU using
        the mm (loaded, or its current's active_mm) is online and in
        mm_cpumask(mm), so the IPIs reach it;
    P10 bounded deferral (a variant that defers frees): once quiet, no
        deferred mm whose generation has moved on enough (the variant's
        ``min_generations``) is still unfreed.

A violation raises InvariantViolation with the invariant's name; the report
adds the CPU states and the lazy users.  ``Machine(invariants=False)``
switches them off.
"""

from ..errors import InvariantViolation


def _where(k, mm):
    lines = []
    for rq in k.rqs:
        uses = []
        if rq.loaded_mm is mm:
            uses.append("loaded")
        if rq.curr is not None and rq.curr.active_mm is mm:
            uses.append(f"active_mm of {rq.curr!r}")
        if rq.prev_mm is mm:
            uses.append("prev_mm")
        if uses:
            lines.append(f"  CPU {rq.cpu} ({'online' if rq.online else 'offline'}): "
                         + ", ".join(uses))
    return "\n".join(lines) or "  no CPU"


def P6_no_lazy_user_at_free(k, mm):
    """No CPU uses *mm* when it is freed."""
    rqs = k.rqs
    # Whether any runqueue names *mm* at all, in one plain pass of ``is``
    # tests (an exit at 128 CPUs runs this; ``in`` would call comparisons);
    # the loop below decides and says which.
    try:
        for rq in rqs:
            if rq.loaded_mm is mm or rq.prev_mm is mm or rq.curr.active_mm is mm:
                break
        else:
            return
    except AttributeError:                    # a runqueue without a current task
        pass
    for rq in rqs:
        loaded = rq.loaded_mm is mm
        active = rq.online and rq.curr is not None and rq.curr.active_mm is mm
        if loaded or active or rq.prev_mm is mm:
            what = "has it loaded" if loaded else \
                "runs a task using it" if active else "holds it as prev_mm"
            raise InvariantViolation(
                f"P6 no use after free: {mm!r} freed by __mmdrop() on CPU {k.cpu} while "
                f"CPU {rq.cpu} still {what} ({k.lazy_tlb.name})",
                f"users of {mm!r}:\n{_where(k, mm)}\nCPU states:\n{k.cpu_states()}", "P6")


def P8_lazy_drop_without_grab(k, mm):
    raise InvariantViolation(
        f"P8 lazy references: mmdrop_lazy_tlb({mm!r}) on CPU {k.cpu} by {k.cur!r} without "
        f"a lazy reference to drop ({k.lazy_tlb.name})",
        f"users of {mm!r}:\n{_where(k, mm)}", "P8")


def P8_lazy_references_match_users(k):
    """Once quiet: each live mm's lazy references are its lazy users."""
    if not k.lazy_tlb.refcounts_lazy:
        return
    counts = {}
    for t in k._lazy_candidates():
        if t.mm is None and t.active_mm is not None and t.active_mm is not k.init_mm:
            counts[t.active_mm] = counts.get(t.active_mm, 0) + 1
    for rq in k.rqs:
        if rq.prev_mm is not None and rq.prev_mm is not k.init_mm:
            counts[rq.prev_mm] = counts.get(rq.prev_mm, 0) + 1
    for mm in list(k.live_mms.values()):
        refs = k.lazy_refs.get(mm, 0)
        users = counts.get(mm, 0)
        floor = refs + (1 if mm.mm_users.counter > 0 else 0)
        if mm.mm_count.counter < floor:
            raise InvariantViolation(
                f"P8 lazy references: {mm!r} has mm_count {mm.mm_count.counter} for {refs} lazy "
                f"reference(s) and {mm.mm_users.counter} user(s): a lazy reference was never "
                f"taken ({k.lazy_tlb.name})",
                f"users of {mm!r}:\n{_where(k, mm)}", "P8")
        if refs != users:
            raise InvariantViolation(
                f"P8 lazy references: {mm!r} holds {refs} lazy reference(s) for {users} lazy "
                f"user(s) ({k.lazy_tlb.name})",
                f"users of {mm!r}:\n{_where(k, mm)}\n"
                + "\n".join(f"  {u!r}" for u in k.lazy_users(mm)), "P8")


def P9_lazy_users_in_mask(k, mm):
    """At cleanup_lazy_tlbs(): the IPIs will reach every lazy user."""
    mask = mm.cpu_bitmap
    for rq in k.rqs:
        uses = rq.loaded_mm is mm or (rq.curr is not None and rq.curr.active_mm is mm)
        if not uses:
            continue
        if rq.cpu == k.cpu and rq.online:
            continue                    # on_each_cpu_mask() runs it here if in the mask
        if not rq.online or not mask >> rq.cpu & 1:
            why = "offline" if not rq.online else "not in mm_cpumask()"
            raise InvariantViolation(
                f"P9 shootdown coverage: CPU {rq.cpu} uses {mm!r} lazily but is {why} when "
                f"cleanup_lazy_tlbs() starts on CPU {k.cpu} ({k.lazy_tlb.name})",
                f"mm_cpumask: {mask:#x}\nusers of {mm!r}:\n{_where(k, mm)}", "P9",
                offline=not rq.online)


def P10_deferred_frees_within_bound(k):
    v = k.lazy_tlb
    deferred = getattr(v, "deferred", None)
    if not deferred:
        return
    for mm, gen, since in deferred:
        if v.generation - gen >= v.min_generations:
            raise InvariantViolation(
                f"P10 bounded deferral: {mm!r} deferred at generation {gen} (at {since} ns) is "
                f"not freed at generation {v.generation} ({v.name})", "", "P10")


def lazy_tlb_at_quiet(k):
    P8_lazy_references_match_users(k)
    P10_deferred_frees_within_bound(k)
