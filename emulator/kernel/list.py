"""include/linux/list.h, the hlist part: a head and the nodes embedded in the
structures it chains.

An ``hlist_node`` knows its containing structure (``entry``: what
container_of() finds) and the head it is on (``pprev``: None when unhashed,
the head otherwise, where C keeps a pointer to the previous ``next``).  The
head keeps its nodes in insertion order; hlist_for_each_entry() walks them
head-first, so the last one added comes first.
"""


class hlist_node:
    __slots__ = ("entry", "pprev")

    def __init__(self, entry):
        # INIT_HLIST_NODE()
        self.entry = entry
        self.pprev = None


class hlist_head:
    __slots__ = ("nodes",)

    def __init__(self):
        # INIT_HLIST_HEAD()
        self.nodes = {}                 # hlist_node -> None, in insertion order


def hlist_add_head(n, h):
    n.pprev = h
    h.nodes[n] = None


def hlist_del_init(n):
    if n.pprev is not None:
        del n.pprev.nodes[n]
        n.pprev = None


def hlist_for_each_entry(h):
    """The structures on *h*, head first (a copy: the walk may delete)."""
    return [n.entry for n in reversed(h.nodes)]
