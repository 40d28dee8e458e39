"""An I/O device's completion interrupt, as the page allocator meets it: the
pages of a finished request (a bounce buffer, a network receive buffer) are
freed from interrupt context on the CPU the interrupt arrives on, through
put_page() -> free_unref_page(): the path that made v6.2 take every pcp lock
with a trylock ("pages may be getting freed from IRQ or SoftIRQ context after
an IO completion").

Departures: no request queue, driver or softirq (the model has no softirq
context: a completion's frees run in hard interrupt context, where the
kernel runs them mostly from the block softirq or NAPI); one interrupt per
request.
"""


class Blk:
    """Mixin."""

    def blk_submit(self, blocks, cpu, ns):
        """The request holding *blocks* ([(pfn, order)]) completes *ns* from
        now with an interrupt on *cpu*."""
        self.engine.at(self.engine.now + ns, self.blk_complete_irq, (cpu, blocks))

    def blk_complete_irq(self, arg):
        cpu, blocks = arg
        rq = self.rqs[cpu]
        if self.irq_deferred(rq, self.blk_complete_irq, arg):
            return
        self._irq_enter(rq, "blk completion")
        for pfn, order in blocks:
            self._free_pages(pfn, order)             # put_page(): the last reference
        self.irq_exit(rq)
