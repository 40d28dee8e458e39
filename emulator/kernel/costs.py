"""Virtual-time costs of kernel paths.

The two frequent costs, system call entry and switching a user task in, are
owed by the task and spent in its next stretch on the CPU (``kdebt``): folded
into its next computation, or spent before it blocks, yields its CPU or lets
its Python body continue.  The CPU is busy for the same time either way; it only takes one
event instead of two.  Not the order, though: the system call's body runs (and wakes
others) before its entry cost, and a task that then sleeps spends it between its
set_current_state() and its dequeue, where a wake-up keeps it from sleeping at all.
pipe_read() and pipe_write() therefore spend it first (kernel/pipe.py: two tasks passing
a token through pipes otherwise stop switching for good); futex and other waits still
spend it late (a departure).  The other costs are spent where they are charged.

Kernel code runs in zero virtual time except where it charges a cost, so
these figures decide how long tasks stay on their CPUs and so how much they
overlap, which is what mm_cid is about.  They are orders of magnitude for a
current x86 server, not measurements; a Machine takes ``costs={...}`` to
change any of them, and ``costs=ZERO`` makes every path instantaneous.
"""

DEFAULT = {
    # entering and leaving the kernel for a system call
    "syscall_ns": 200,
    # switching to a task that then returns to user space (switch_to, cache refill)
    "context_switch_ns": 1_500,
    # try_to_wake_up() of a task on another CPU, paid by the waker, per task woken
    "ttwu_remote_ns": 700,
    # a reschedule IPI reaching its CPU, idle exit included
    "ipi_latency_ns": 2_000,
    # timer_slack_ns of a SCHED_OTHER task: a user sleep ends at expiry + slack
    "timer_slack_ns": 50_000,
    # clone() of a thread or process, paid by the parent
    "clone_ns": 10_000,
    # do_exit(), paid by the exiting task before exit_signals()
    "exit_ns": 10_000,
    # execve(), paid before the point of no return
    "exec_ns": 100_000,
    # a pcp list operation of the page allocator's fast path (one page on or off)
    "pcp_op_ns": 100,
    # one page moved between a pcp list and the buddy lists under zone->lock
    # (__rmqueue() or __free_one_page() with its merging)
    "buddy_page_ns": 150,
    # an interrupt's entry and exit (irq time of its CPU, what osnoise counts)
    "irq_entry_ns": 1_000,
    # a page fault that maps a new anonymous page (page allocation excluded)
    "page_fault_ns": 1_000,
    # CPU hotplug: a CPU's boot until it runs (__cpu_up()), and take_cpu_down()'s
    # work under stop_machine with interrupts off (kernel/cpu.py)
    "cpu_up_ns": 100_000,
    "cpu_dying_ns": 20_000,
}

ZERO = {name: 0 for name in DEFAULT}


def resolve(costs):
    table = dict(DEFAULT)
    if costs:
        unknown = set(costs) - set(DEFAULT)
        if unknown:
            from ..errors import UsageError
            raise UsageError(f"unknown cost {sorted(unknown)[0]!r}; known: {', '.join(DEFAULT)}")
        table.update(costs)
    return table
