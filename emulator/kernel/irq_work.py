"""kernel/irq_work.c: callbacks run soon in hard interrupt context on a CPU."""


class irq_work:
    __slots__ = ("func", "pending", "entry", "cpu")

    def __init__(self, func):
        self.func = func
        self.pending = False
        self.entry = None
        self.cpu = -1


class IrqWork:
    """Mixin.  The self-IPI is an event at the current virtual time."""

    def irq_work_queue(self, work):
        return self.irq_work_queue_on(work, self.cpu)

    def irq_work_queue_on(self, work, cpu):
        """Returns False if the work was already pending."""
        if work.pending:
            return False
        work.pending = True
        work.cpu = cpu
        work.entry = self.engine.at(self.engine.now, self._irq_work_run, work)
        return True

    def _irq_work_run(self, work):
        rq = self.rqs[work.cpu]
        if self.irq_deferred(rq, self._irq_work_run, work):
            return
        work.entry = None
        self._irq_enter(rq, "irq_work")
        work.pending = False
        work.func(work)
        self.irq_exit(rq)

    def irq_work_is_pending(self, work):
        return work.pending

    def irq_work_sync(self, work):
        """Wait, spinning, until *work* is no longer pending or running."""
        spun = 0
        while work.pending:
            spun = self.cpu_relax("irq_work_sync", spun)
