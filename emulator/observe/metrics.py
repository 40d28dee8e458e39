"""What ``python -m emulator compare`` measures in a run, as subscribers of
the tracepoints (nothing here is kernel code):

- ``processes`` and ``threads``: the distinct tgids and pids that
  try_to_wake_up() woke while they had an mm (sched_wakeup), as seed 000's
  bpftrace script counted them (``fentry:try_to_wake_up`` with
  ``args->p->mm != 0``).  Difference: fentry fires on every call, the
  tracepoint only on calls that woke the task (a task already running is
  not counted until it sleeps and is woken).
- the scans' invocations and durations (funcgraph_entry/_exit around each
  run of a variant's scan, ``task_mm_cid_work``): the time from entry to
  exit less the time the task running it was switched out (sched_switch),
  in us, as the script's ``fexit`` computed it.  Difference: the script
  subtracted one preemption, this every one; interrupts are not counted in
  either (in the model an interrupt handler's time does not delay the task
  it interrupts, so it is not in the duration at all).
- the cids user space saw over time (rseq_update's ``mm_cid``): per slice of
  the run, the largest and how many distinct values.
"""

CID_BINS = 100


class RunMetrics:
    def __init__(self, kernel, duration_ns):
        self.k = kernel
        self.tasks = kernel.tasks
        self.tgids = set()
        self.pids = set()
        self.scans = {}                  # func -> [durations in ns]
        self.in_scan = {}                # pid -> [func, entry, switched out at, time out]
        self.bin_ns = max(1, duration_ns // CID_BINS)
        self.cid_max = [-1] * CID_BINS
        self.cid_sets = [set() for _ in range(CID_BINS)]
        tp = kernel.tp
        tp.subscribe("sched_wakeup", self.sched_wakeup)
        tp.subscribe("funcgraph_entry", self.funcgraph_entry)
        tp.subscribe("funcgraph_exit", self.funcgraph_exit)
        tp.subscribe("sched_switch", self.sched_switch)
        tp.subscribe("rseq_update", self.rseq_update)

    def sched_wakeup(self, record):
        pid = record[5][2]
        p = self.tasks.get(pid)
        if p is not None and p.mm is not None:
            self.pids.add(pid)
            self.tgids.add(p.tgid)

    def funcgraph_entry(self, record):
        self.in_scan[record[3]] = [record[5][1], record[0], None, 0]

    def funcgraph_exit(self, record):
        scan = self.in_scan.pop(record[3], None)
        f = record[5]
        if scan is not None:
            self.scans.setdefault(f[1], []).append(f[3] - f[2] - scan[3])

    def sched_switch(self, record):
        if not self.in_scan:
            return
        f = record[5]
        out = self.in_scan.get(f[2])         # prev_pid
        if out is not None:
            out[2] = record[0]
        back = self.in_scan.get(f[6])        # next_pid
        if back is not None and back[2] is not None:
            back[3] += record[0] - back[2]
            back[2] = None

    def rseq_update(self, record):
        f = record[5]
        cid = f[3]
        i = min(record[0] // self.bin_ns, CID_BINS - 1)
        if cid > self.cid_max[i]:
            self.cid_max[i] = cid
        self.cid_sets[i].add(cid)

    def values(self):
        """The run's figures by name (numbers)."""
        out = {"processes": len(self.tgids), "threads": len(self.pids)}
        for func, durations in sorted(self.scans.items()):
            n = len(durations)
            out["scan_func"] = func
            out["scan_invocations"] = n
            if n:
                out["scan_avg_us"] = sum(durations) / n / 1000
                out["scan_max_us"] = max(durations) / 1000
                out["scan_sum_us"] = sum(durations) / 1000
        return out

    def cid_series(self):
        """(bin width ns, largest cid per bin (-1: none seen), distinct cids per bin)."""
        return {"bin_ns": self.bin_ns, "max": list(self.cid_max),
                "distinct": [len(s) for s in self.cid_sets]}


def flatten_stats(stats):
    """Machine.stats() as numbers: numbers as they are; ``cpu0=3 cpu1=4``
    strings summed under their key; ``avg/max=1.0/2.0 n=3`` split into
    ``key avg``, ``key max``, ``key n``; other text left out."""
    import re
    out = {}
    for key, value in stats.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[key] = value
            continue
        if not isinstance(value, str):
            continue
        pairs = re.findall(r"([A-Za-z_/]+?)(\d*)=([-\d.]+(?:/[-\d.]+)*)", value)
        if not pairs:
            continue
        if all(name == "cpu" and n for name, n, _ in pairs):
            out[key] = sum(float(v) for _, _, v in pairs)
            continue
        for name, n, v in pairs:
            for part, number in zip((name + n).split("/"), v.split("/")):
                try:
                    out[f"{key} {part}"] = float(number)
                except ValueError:
                    pass
    return out
