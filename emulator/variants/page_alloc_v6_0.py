"""page_alloc v6.0: seed 002 as merged (4b23a68f9536 "protect PCP lists with
a spinlock", 443c2accd1b6 "remotely drain per-cpu lists", 01b44456a7aa
"replace local_lock with normal spinlock", in the 6.0 merge window).

The same code as the v5 posting in every function the model has: the one
fixup folded in, f75f1cd0a693 (Mel Gorman, 2022-06-27, "use
pcp_spin_trylock_irqsave instead of pcpu_spin_trylock_irqsave", after Yu
Zhao's report), renames a macro call to one that expands to the same thing.
Checked hunk by hunk against v6.0-rc1 and v6.0.1's mm/page_alloc.c, which
agree.  A separate name so that a patch against mainline derives from what
mainline released.
"""

from . import register
from .page_alloc_seed_002 import PageAllocSeed002


@register
class PageAllocV6_0(PageAllocSeed002):
    name = "v6.0"
    copies = "4b23a68f9536, 443c2accd1b6, 01b44456a7aa (v6.0): the v5 series as merged"
