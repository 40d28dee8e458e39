"""Mirror of tools/testing/selftests/rseq/run_syscall_errors_test.sh:

    GLIBC_TUNABLES="${GLIBC_TUNABLES:-}:glibc.pthread.rseq=0" ./syscall_errors_test

(the mirror of syscall_errors_test turns glibc's registration off itself)."""


def run_syscall_errors_test_sh(exec_program, nr_cpus, echo, full=None):
    return exec_program("syscall_errors_test", [])
