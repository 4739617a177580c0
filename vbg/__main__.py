import signal
import sys

try:
    # SIGTERM, and SIGHUP (a closed terminal) unless started under nohup, stop a run the way
    # Ctrl-C does from the first moment, also while vbg is still importing (main() then
    # installs the handlers it keeps while it runs). Inside the try: a signal that lands as
    # soon as the first handler is in place (signal.signal still returning) is caught too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.default_int_handler)
    from .cli import main
except KeyboardInterrupt:  # a signal while Python is still importing: no traceback
    print("vbg: interrupted", file=sys.stderr)
    code = 130
else:
    code = main()

# Under `python -m`, CPython kills the process with SIGINT at exit (exit status -2, not
# 130 or 0) when any code run from a string (exec/eval: dataclasses, namedtuple and
# others do this while modules load) ended with a KeyboardInterrupt at any time, even
# one that vbg caught and finished cleanly. Evaluating a string clears that mark, so
# the exit status is the run's own.
exec("pass", {})
raise SystemExit(code)
