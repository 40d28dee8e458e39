"""Mirrors of tools/testing/selftests/rseq/."""


def xfail_known_findings(run):
    """*run* for a pytest test: a run that ends in a recorded finding of the
    variant or of an era it derives from (its known_findings, as
    tests/test_conformance.py judges them) is an xfail with the finding's
    reason; any other failure stays a failure."""
    import pytest

    from emulator.errors import EmulationFailure
    from emulator.explore.findings import known_finding

    def checked(machine):
        try:
            return run(machine)
        except EmulationFailure as exc:
            reason = known_finding(machine.mm_cid_class, exc, machine.kernel.causes)
            if reason is None:
                raise
            pytest.xfail(reason)
    return checked
