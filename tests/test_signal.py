"""Stories about signals (emulator.kernel.signal, emulator.uapi.signal).

Handlers run on the way back to user space, with the signal blocked; what a
default action does is what a parent's waitpid() sees.
"""

import errno
import os

import pytest

from emulator.errors import UsageError
from emulator.uapi.libc import (
    busy_wait, execve, exit, fork, getpid, gettid, pthread_create, pthread_join, sched_setaffinity,
    usleep, waitpid,
)
from emulator.uapi.signal import (
    SIG_BLOCK, SIG_DFL, SIG_IGN, SIG_UNBLOCK, SIGABRT, SIGCHLD, SIGKILL, SIGSEGV, SIGSTOP,
    SIGTERM, SIGUSR1, SIGUSR2, abort, kill, pthread_kill, raise_, sigaction, signal,
    sigpending, sigprocmask, struct_sigaction, tgkill,
)


def wait_status(machine, child_main):
    """The wait status a parent sees for a child running *child_main*."""
    seen = {}

    def main():
        _, seen["status"] = waitpid(fork(child_main))
        return 0

    assert machine.run(main) == 0
    return seen["status"]


# -- handlers ------------------------------------------------------------------------------

def test_raise_runs_the_handler_before_raise_returns(machine_factory):
    """raise(SIGUSR1) with a handler installed: the handler runs, then raise returns 0."""
    log = []

    def main():
        sigaction(SIGUSR1, struct_sigaction(lambda signo: log.append(("handler", signo))))
        log.append(("raise", raise_(SIGUSR1)))
        return 0

    assert machine_factory(2).run(main) == 0
    assert log == [("handler", SIGUSR1), ("raise", 0)]


def test_a_signal_is_blocked_inside_its_own_handler_and_unblocked_by_sigreturn(machine_factory):
    """Raising the same signal in its handler only makes it pending; it runs
    once the first handler has returned (rt_sigreturn restores the mask)."""
    log = []

    def handler(signo):
        log.append("enter")
        if len(log) == 1:
            raise_(signo)
            pending = set()
            sigpending(pending)
            log.append(("pending", sorted(pending)))
        log.append("leave")

    def main():
        sigaction(SIGUSR1, struct_sigaction(handler))
        raise_(SIGUSR1)
        return 0

    assert machine_factory(2).run(main) == 0
    assert log == ["enter", ("pending", [SIGUSR1]), "leave", "enter", "leave"]


def test_a_blocked_signal_waits_until_it_is_unblocked(machine_factory):
    log = []

    def main():
        sigaction(SIGUSR2, struct_sigaction(lambda signo: log.append("handler")))
        sigprocmask(SIG_BLOCK, {SIGUSR2})
        raise_(SIGUSR2)
        log.append("still blocked")
        sigprocmask(SIG_UNBLOCK, {SIGUSR2})
        log.append("unblocked")
        return 0

    assert machine_factory(2).run(main) == 0
    assert log == ["still blocked", "handler", "unblocked"]


def test_tgkill_reaches_the_named_thread_running_on_another_cpu(machine_factory):
    """A thread busy on CPU 1 is kicked by the IPI and runs the handler there."""
    where = []

    def worker(_):
        sched_setaffinity(0, {1})
        busy_wait(2_000_000)
        return 0

    def main():
        sched_setaffinity(0, {0})
        sigaction(SIGUSR1, struct_sigaction(lambda signo: where.append(gettid())))
        t = pthread_create(worker)
        usleep(500)
        tgkill(getpid(), t.task.pid, SIGUSR1)
        pthread_join(t)
        where.append(("worker", t.task.pid))
        return 0

    assert machine_factory(2).run(main) == 0
    assert where[0] == where[1][1]


def test_kill_of_another_process_runs_its_handler(machine_factory):
    """The child installs a handler, waits for the signal, and exits with what it saw."""
    def child():
        got = []
        sigaction(SIGUSR1, struct_sigaction(lambda signo: got.append(signo)))
        for _ in range(100):
            if got:
                return 7
            usleep(100)
        return 1

    def main():
        pid = fork(child)
        usleep(1000)
        kill(pid, SIGUSR1)
        _, status = waitpid(pid)
        return os.WEXITSTATUS(status)

    assert machine_factory(2).run(main) == 7


def test_pthread_kill_of_an_ended_thread_is_esrch(machine_factory):
    seen = {}

    def main():
        t = pthread_create(lambda _: 0)
        pthread_join(t)
        seen["ret"] = pthread_kill(t, SIGUSR1)
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen["ret"] == errno.ESRCH


def test_a_fork_inherits_handlers_and_an_exec_resets_them(machine_factory):
    """The forked child's raise() runs the inherited handler (exit 3); after
    execve() the same raise() takes the default action and kills it."""
    def after_exec():
        raise_(SIGUSR1)
        return 0

    def forked():
        raise_(SIGUSR1)
        return 1

    def exec_child():
        execve(after_exec)

    def main():
        sigaction(SIGUSR1, struct_sigaction(lambda signo: exit(3)))
        _, forked_status = waitpid(fork(forked))
        _, exec_status = waitpid(fork(exec_child))
        assert os.WEXITSTATUS(forked_status) == 3
        assert os.WIFSIGNALED(exec_status) and os.WTERMSIG(exec_status) == SIGUSR1
        return 0

    assert machine_factory(2).run(main) == 0


# -- default actions and what the parent sees ----------------------------------------------

@pytest.mark.parametrize("sig", [SIGUSR1, SIGTERM, SIGKILL])
def test_a_terminating_signal_is_the_wait_status(machine_factory, sig):
    status = wait_status(machine_factory(2), lambda: raise_(sig) or 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == sig
    assert not os.WCOREDUMP(status)


def test_a_core_signal_dumps_only_with_a_core_limit(machine_factory):
    """SIGSEGV's action is "core": with RLIMIT_CORE 0 (the usual default) no
    core is written; with a limit, WCOREDUMP is set."""
    no_core = wait_status(machine_factory(2), lambda: raise_(SIGSEGV) or 0)
    assert os.WTERMSIG(no_core) == SIGSEGV and not os.WCOREDUMP(no_core)
    machine = machine_factory(2)
    machine.kernel.rlimit_core = 1 << 20
    core = wait_status(machine, lambda: raise_(SIGSEGV) or 0)
    assert os.WTERMSIG(core) == SIGSEGV and os.WCOREDUMP(core)


def test_abort_kills_with_sigabrt_even_when_it_is_caught(machine_factory):
    """abort(): a handler for SIGABRT runs, and then the process dies of SIGABRT anyway."""
    ran = []

    def child():
        sigaction(SIGABRT, struct_sigaction(lambda signo: ran.append(signo)))
        abort()

    status = wait_status(machine_factory(2), child)
    assert ran == [SIGABRT]
    assert os.WTERMSIG(status) == SIGABRT


def test_a_process_killed_by_a_signal_takes_all_its_threads(machine_factory):
    """SIGTERM to the process while a second thread computes: both go, and the
    parent sees SIGTERM."""
    def child():
        pthread_create(lambda _: busy_wait(50_000_000))
        usleep(100)
        raise_(SIGTERM)
        return 0

    status = wait_status(machine_factory(2), child)
    assert os.WTERMSIG(status) == SIGTERM


@pytest.mark.parametrize("how", ["SIG_IGN", "SIGCHLD's default"])
def test_an_ignored_signal_does_nothing(machine_factory, how):
    def child():
        if how == "SIG_IGN":
            signal(SIGUSR1, SIG_IGN)
            raise_(SIGUSR1)
        else:
            raise_(SIGCHLD)
        return 5

    assert os.WEXITSTATUS(wait_status(machine_factory(2), child)) == 5


def test_signal_returns_the_old_handler(machine_factory):
    seen = []

    def handler(signo):
        pass

    def main():
        seen.append(signal(SIGUSR1, handler))
        seen.append(signal(SIGUSR1, SIG_DFL))
        return 0

    assert machine_factory(1).run(main) == 0
    assert seen == [SIG_DFL, handler]


def test_bad_calls(machine_factory):
    """Errors as the kernel returns them; job control is refused as not modelled."""
    seen = {}

    def main():
        for name, call in (("sigaction SIGKILL", lambda: sigaction(SIGKILL, struct_sigaction())),
                           ("kill 65", lambda: kill(getpid(), 65)),
                           ("kill no such pid", lambda: kill(99999, SIGUSR1)),
                           ("tgkill wrong tgid", lambda: tgkill(getpid() + 1000, gettid(), 0))):
            try:
                call()
                seen[name] = 0
            except OSError as exc:
                seen[name] = exc.errno
        try:
            raise_(SIGSTOP)
        except UsageError:
            seen["SIGSTOP"] = "not modelled"
        return 0

    assert machine_factory(1).run(main) == 0
    assert seen == {"sigaction SIGKILL": errno.EINVAL, "kill 65": errno.EINVAL,
                    "kill no such pid": errno.ESRCH, "tgkill wrong tgid": errno.ESRCH,
                    "SIGSTOP": "not modelled"}
