"""``compare --plot DIR``: PNG plots of a comparison (matplotlib, pinned in
pyproject.toml; without it --plot fails with one line before any run).

- ``latency-<workload>-<N>cpus.png``: the wake-up latency distribution of
  each variant (Thr and IRQ, every CPU's samples), log scale;
- ``osnoise-<workload>-<N>cpus.png``: the interruptions' lengths;
- ``cid-<workload>-<N>cpus.png``: the cids user space saw over time (the
  largest per slice of the run, and how many distinct), first seed;
- ``scan-<N>cpus.png`` (mm_cid): seed 000's invocations and mean duration
  per workload, a bar per variant.

Each title names the workload, the CPU count, the virtual duration and the
seeds.
"""

import os
import re

from ..errors import UsageError


def require():
    """Import matplotlib (Agg) or raise a UsageError saying how to get it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"--plot needs matplotlib (pip install 'matplotlib==3.11.2'): {exc}") from None


def _slug(text):
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def write_plots(cmp, directory):
    """Write the comparison's plots into *directory*; their paths."""
    require()
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--plot {directory}: {exc.strerror}") from None
    paths = []

    def save(fig, name):
        path = os.path.join(directory, name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    for block in cmp.blocks:
        workload, cpus = block
        tag = f"{_slug(workload)}-{cpus}cpus"
        title = cmp.block_title(block)
        for kind, contexts, unit in (("latency", ("Thr", "IRQ"), "wake-up latency"),
                                     ("noise", ("CPU",), "interruption length")):
            hists = [(v, cmp.histogram(block, v, kind)) for v in cmp.variants]
            hists = [(v, h) for v, h in hists if h is not None]
            if not hists:
                continue
            fig, axes = plt.subplots(1, len(contexts), figsize=(6.5 * len(contexts), 4.5),
                                     squeeze=False)
            for ax, ctx in zip(axes[0], contexts):
                top = 5
                positive = False
                for n, (v, h) in enumerate(hists):
                    buckets, over = h.samples_by_bucket(ctx)
                    last = max([i for i, n in enumerate(buckets) if n] + [0])
                    top = max(top, last + 2)
                    s = h.summary(ctx)
                    label = v if s is None else f"{v} (max {s[3] / 1000:.1f} us, n={s[0]})"
                    if over:
                        label += f", {over} over {h.entries} us"
                    positive = positive or any(buckets)
                    # the head wide and pale, the others dashed over it: equal curves stay visible
                    style = {"linewidth": 4, "alpha": 0.45} if n == 0 else \
                        {"linewidth": 1.5, "linestyle": (0, (4, 2 + n))}
                    ax.step(range(len(buckets) + 1), buckets + [0], where="post", label=label,
                            **style)
                if positive:
                    ax.set_yscale("log")
                    ax.set_ylim(bottom=0.5)          # a bucket of 1 sample still shows
                ax.set_xlim(0, top)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel(f"{ctx} {unit} (us, 1 us buckets)")
                ax.set_ylabel("samples")
                ax.legend(fontsize=8)
                ax.grid(alpha=0.3)
            fig.suptitle(title, fontsize=9)
            save(fig, f"{'latency' if kind == 'latency' else 'osnoise'}-{tag}.png")
        series = [(v, r["cid"]) for v in cmp.variants for r in cmp.runs(block, v)[:1]
                  if r.get("cid")]
        if series and any(max(c["max"]) >= 0 for _, c in series):
            fig, (top_ax, low_ax) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
            for n, (v, c) in enumerate(series):
                xs = [i * c["bin_ns"] / 1e6 for i in range(len(c["max"]))]
                style = {"linewidth": 4, "alpha": 0.45} if n == 0 else \
                    {"linewidth": 1.5, "linestyle": (0, (4, 2 + n))}
                top_ax.step(xs, [m if m >= 0 else float("nan") for m in c["max"]],
                            where="post", label=v, **style)
                low_ax.step(xs, c["distinct"], where="post", label=v, **style)
            top_ax.set_ylabel("largest mm_cid seen\n(none: no update)")
            low_ax.set_ylabel("distinct mm_cids seen")
            # From 0 up, so that a flat line reads as its value and the
            # ticks are whole numbers (a range under 1 gets fractional ones).
            top_max = max((m for _, c in series for m in c["max"]), default=0)
            low_max = max((d for _, c in series for d in c["distinct"]), default=0)
            top_ax.set_ylim(-0.5, top_max + 1)
            low_ax.set_ylim(-0.5, low_max + 1)
            for ax in (top_ax, low_ax):
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            low_ax.set_xlabel(f"virtual time (ms), slices of {series[0][1]['bin_ns'] / 1e6:g} ms")
            for ax in (top_ax, low_ax):
                ax.legend(fontsize=8)
                ax.grid(alpha=0.3)
            fig.suptitle(f"mm_cid values user space saw (rseq_update), every mm\n{title} "
                         f"(the first seed's run)", fontsize=9)
            save(fig, f"cid-{tag}.png")
    if cmp.subsystem == "mm_cid":
        for cpus in dict.fromkeys(n for _, n in cmp.blocks):
            blocks = [b for b in cmp.blocks if b[1] == cpus]
            fig, (inv_ax, dur_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
            width = 0.8 / len(cmp.variants)
            for i, v in enumerate(cmp.variants):
                xs = [j + i * width for j in range(len(blocks))]
                for ax, key in ((inv_ax, "scan_invocations"), (dur_ax, "scan_avg_us")):
                    ys = [(cmp.stat(b, v, key) or (0,))[0] for b in blocks]
                    bars = ax.bar(xs, ys, width, label=v)
                    # A block whose runs all failed has no figure: say so
                    # where its bar would be, rather than draw a 0.
                    for x, b, bar in zip(xs, blocks, bars):
                        if cmp.stat(b, v, "processes") is None:
                            word = cmp.seed_000_cells(b, v)[0]
                            ax.text(x, 0, word, rotation=90, ha="center", va="bottom",
                                    fontsize=8, color=bar.get_facecolor())
            for ax, label in ((inv_ax, "scan invocations"), (dur_ax, "scan duration avg (us)")):
                ax.set_xticks([j + width * (len(cmp.variants) - 1) / 2 for j in range(len(blocks))])
                ax.set_xticklabels([b[0] for b in blocks], fontsize=8)
                ax.set_ylabel(label)
                ax.legend(fontsize=8)
                ax.grid(alpha=0.3, axis="y")
            fig.suptitle(f"seed 000's table on {cpus} CPUs: {cmp.duration_ns / 1e9:.3f} s of "
                         f"virtual time per run, {cmp.seeds_text()}", fontsize=9)
            save(fig, f"scan-{cpus}cpus.png")
    return paths
