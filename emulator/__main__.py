import signal
import sys

from . import interrupt

# For the life of the process: a signal after the command's last checkpoint is
# recorded (and gives exit status 130), never a traceback; a second one exits.
interrupt.enter(command=True)

from .cli import main  # noqa: E402 - after the handler, before the heavy imports

status = main()
# The command is over: a signal from now on changes nothing (Python's exit
# would meet it with the default handlers).
if hasattr(signal, "pthread_sigmask"):
    signal.pthread_sigmask(signal.SIG_BLOCK, interrupt.SIGNALS)
sys.exit(interrupt.EXIT_STATUS if interrupt.received() is not None else status)
