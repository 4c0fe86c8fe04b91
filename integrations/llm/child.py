"""llama-cpp-python's server as a child process that ends when its parent does, however the parent ends.

``python -m integrations.llm.child PARENT_PID ARGS...`` runs ``python -m llama_cpp.server ARGS...`` with a
watcher thread that exits the process once it is no longer ``PARENT_PID``'s child (the parent was killed,
even with SIGKILL, and the child was re-parented). A stopped app's ``LocalLLMServer.stop`` still ends it
first; this only keeps a killed app from leaving a server behind.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time

POLL_S = 1.0


def _watch(parent: int) -> None:
    while True:
        time.sleep(POLL_S)
        if os.getppid() != parent:
            os._exit(0)  # no clean-up to do: the server holds nothing that outlives it


def main() -> None:
    """Start the watcher, then run the server module as ``__main__`` with the remaining arguments."""
    if len(sys.argv) < 2 or not sys.argv[1].isdigit():
        raise SystemExit("usage: python -m integrations.llm.child PARENT_PID [llama_cpp.server arguments]")
    parent = int(sys.argv[1])
    if os.getppid() != parent:
        raise SystemExit(0)  # the parent is already gone
    threading.Thread(target=_watch, args=(parent,), name="parent-watch", daemon=True).start()
    sys.argv = ["llama_cpp.server", *sys.argv[2:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
