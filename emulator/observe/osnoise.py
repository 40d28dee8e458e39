"""What osnoise (kernel/trace/trace_osnoise.c) reports for the isolated CPUs:
every interruption of the task running there, with its cause and duration.

  irq noise     an interrupt handled while a task (not the idle task) runs
                on the CPU: the tick, an IPI, a timer, irq_work; its duration
                is the handler's time (irq_handler_exit's ``ns``);
  thread noise  another thread run while the task was preempted (sched_switch
                with prev_state R+), until the task runs again: a kworker, a
                migration thread; its cause is the thread that ran first.

A subscriber of the irq_handler_exit and sched_switch tracepoints, as osnoise
hooks the kernel's.  Departures: osnoise measures from its own busy thread;
here any task is the measured one, the idle task excepted.  Softirq and NMI
noise do not exist in the model.
"""


class Osnoise:
    def __init__(self, kernel, cpus):
        self.cpus = cpus                          # a mask
        self.noise = []                           # (cpu, kind, cause, start ns, duration ns)
        self.away = {}                            # cpu -> (pid preempted, since, first intruder)
        self.engine = kernel.engine
        kernel.tp.subscribe("irq_handler_exit", self.irq_handler_exit)
        kernel.tp.subscribe("sched_switch", self.sched_switch)

    def irq_handler_exit(self, record):
        now, cpu, _comm, pid, _event, fields = record
        if self.cpus >> cpu & 1 and pid != 0:
            f = fields.fields
            self.noise.append((cpu, "irq", f["irq"], now, f["ns"]))

    def sched_switch(self, record):
        now, cpu = record[0], record[1]
        if not self.cpus >> cpu & 1:
            return
        f = record[5].fields
        away = self.away.get(cpu)
        if away is not None and f["next_pid"] == away[0]:
            del self.away[cpu]
            self.noise.append((cpu, "thread", away[2], away[1], now - away[1]))
        elif away is None and f["prev_state"] == "R+" and f["prev_pid"] != 0:
            self.away[cpu] = (f["prev_pid"], now, f["next_comm"])

    def summary(self):
        """Per isolated CPU: interruptions, their total and longest ns, and
        the count by cause."""
        out = {}
        for cpu, kind, cause, _start, ns in self.noise:
            s = out.setdefault(cpu, {"count": 0, "total_ns": 0, "max_ns": 0, "causes": {}})
            s["count"] += 1
            s["total_ns"] += ns
            s["max_ns"] = max(s["max_ns"], ns)
            key = f"{kind}:{cause}"
            s["causes"][key] = s["causes"].get(key, 0) + 1
        return out
