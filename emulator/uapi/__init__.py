"""What emulated user code calls: ``emulator.uapi.libc`` and ``emulator.uapi.rseq``."""
