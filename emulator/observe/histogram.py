"""Latency and noise histograms, printed as ``rtla timerlat hist`` and
``rtla osnoise hist`` print theirs (tools/tracing/rtla/src/timerlat_hist.c,
osnoise_hist.c): a column per CPU and context (``IRQ-000 Thr-000`` for
timerlat, ``CPU-000`` for osnoise), 1 us buckets (``-b 1``) and 256 entries
(``-E 256``) with the rest counted ``over``, rows with no sample left out,
then the over/count/min/avg/max rows (avg the integer sum/count, ``-`` for a
column without samples) and, as newer rtla prints it, an ``ALL:`` block over
every CPU.  Values are kept in ns and printed in us as rtla divides them.
"""

KINDS = {
    "timerlat": ("# RTLA timerlat histogram", ("IRQ", "Thr")),
    "osnoise": ("# RTLA osnoise histogram", ("CPU",)),
}


class Histogram:
    def __init__(self, kind="timerlat", bucket_us=1, entries=256):
        if kind not in KINDS:
            raise ValueError(f"unknown histogram kind {kind!r}")
        self.kind = kind
        self.contexts = KINDS[kind][1]
        self.bucket_us = bucket_us
        self.entries = entries
        self.columns = {}            # (cpu, context) -> [buckets, over, count, min, max, sum] (ns)

    def add(self, cpu, context, ns):
        col = self.columns.get((cpu, context))
        if col is None:
            col = self.columns[(cpu, context)] = [[0] * self.entries, 0, 0, ns, ns, 0]
        bucket = ns // 1000 // self.bucket_us
        if bucket < self.entries:
            col[0][bucket] += 1
        else:
            col[1] += 1
        col[2] += 1
        col[3] = min(col[3], ns)
        col[4] = max(col[4], ns)
        col[5] += ns

    def merge(self, other):
        """Add *other*'s samples (another seed's run) to these."""
        for key, (buckets, over, count, lo, hi, total) in other.columns.items():
            col = self.columns.get(key)
            if col is None:
                self.columns[key] = [list(buckets), over, count, lo, hi, total]
                continue
            col[0] = [a + b for a, b in zip(col[0], buckets)]
            col[1] += over
            if count:               # (a column without samples has no min or max)
                col[3] = min(col[3], lo) if col[2] else lo
                col[4] = max(col[4], hi) if col[2] else hi
            col[2] += count
            col[5] += total
        return self

    def summary(self, context):
        """(count, min, avg, max) in ns over every CPU's *context* column, or None."""
        cols = [c for (_, ctx), c in self.columns.items() if ctx == context and c[2]]
        if not cols:
            return None
        count = sum(c[2] for c in cols)
        return count, min(c[3] for c in cols), sum(c[5] for c in cols) / count, max(c[4] for c in cols)

    def samples_by_bucket(self, context):
        """Every CPU's *context* buckets added up, and the over count."""
        total = [0] * self.entries
        over = 0
        for (_, ctx), col in self.columns.items():
            if ctx == context:
                total = [a + b for a, b in zip(total, col[0])]
                over += col[1]
        return total, over

    # -- data for JSON and worker processes ---------------------------------------------------

    def to_data(self):
        return {"kind": self.kind, "bucket_us": self.bucket_us, "entries": self.entries,
                "columns": [[cpu, ctx] + col for (cpu, ctx), col in sorted(self.columns.items())]}

    @classmethod
    def from_data(cls, data):
        h = cls(data["kind"], data["bucket_us"], data["entries"])
        for cpu, ctx, buckets, over, count, lo, hi, total in data["columns"]:
            h.columns[(cpu, ctx)] = [list(buckets), over, count, lo, hi, total]
        return h

    # -- rtla's text --------------------------------------------------------------------------

    def rtla_text(self, duration_ns, notes=()):
        """The histogram as rtla prints it; *notes* are comment lines added
        after rtla's header (where the figures came from)."""
        title, contexts = KINDS[self.kind]
        cpus = sorted({cpu for cpu, _ in self.columns})
        keys = [(cpu, ctx) for cpu in cpus for ctx in contexts]
        seconds = duration_ns // 1_000_000_000
        lines = [title, "# Time unit is microseconds (us)",
                 f"# Duration: {seconds // 86400:3d} {seconds // 3600 % 24:02d}:"
                 f"{seconds // 60 % 60:02d}:{seconds % 60:02d}"]
        lines += [f"# {note}" for note in notes]
        lines.append("Index" + "".join(f"   {ctx}-{cpu:03d}" for cpu, ctx in keys))
        empty = [0] * self.entries
        cols = [self.columns.get(key) for key in keys]
        for bucket in range(self.entries):
            counts = [(c[0] if c else empty)[bucket] for c in cols]
            if any(counts):
                lines.append(f"{bucket * self.bucket_us:<6d}" + "".join(f"{n:9d} " for n in counts))

        def row(label, value):
            return label + "".join(f"{value(c):9d} " if c and c[2] else "        - " for c in cols)
        lines.append("over: " + "".join(f"{(c[1] if c else 0):9d} " for c in cols))
        lines.append("count:" + "".join(f"{(c[2] if c else 0):9d} " for c in cols))
        lines.append(row("min:  ", lambda c: c[3] // 1000))
        lines.append(row("avg:  ", lambda c: c[5] // c[2] // 1000))
        lines.append(row("max:  ", lambda c: c[4] // 1000))
        lines.append("ALL:  " + "".join(f"{ctx:>9} " for ctx in contexts))
        summaries = [self.summary(ctx) for ctx in contexts]
        for label, i in (("count:", 0), ("min:  ", 1), ("avg:  ", 2), ("max:  ", 3)):
            lines.append(label + "".join(
                (f"{s[i] if i == 0 else int(s[i]) // 1000:9d} " if s else "        - ")
                for s in summaries))
        return "\n".join(line.rstrip() for line in lines)
