"""A Jupyter kernel (on ipykernel's Kernel base class) that drives one long-lived child process over pipes.

The bash and JavaScript kernels of paddock-interp are subclasses. A cell is sent to the child; the child ends it
with a marker line on each of its output pipes (stdout, stderr and, for JavaScript, its event pipe), so
everything a cell printed has arrived when its reply goes out. SIGINT to this kernel (the server's interrupt)
is passed on to the child's process group; a child that does not settle within the grace, or that exits, is
started again, and the cell says so.
"""

import os
import queue
import signal
import subprocess
import threading
import time

from ipykernel.kernelbase import Kernel

MARKER = "\x1epaddock-cell-end\x1e"
INTERRUPT_GRACE_S = 2.0


class PipeKernel(Kernel):
    implementation = "paddock-pipe"
    implementation_version = "1.0"
    banner = ""
    #: how the child is started: argv list
    command = None
    #: whether the child writes events (JSON lines) to a pipe of its own, besides stdout and stderr
    event_pipe = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._child = None
        self._start_child()

    # -- the child ---------------------------------------------------------------------------------------------
    def _start_child(self):
        self._queue = queue.Queue()
        pass_fds = ()
        command = list(self.command)
        if self.event_pipe:
            event_read, event_write = os.pipe()
            # The child gets the write end under the same number, and that number as its last argument.
            pass_fds = (event_write,)
            command.append(str(event_write))
        self._child = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            # A process group of its own (killpg reaches what it started) inside the kernel's session, not a new
            # session: the server's watchdog counts and kills by session (Kernels/ProcessWatchdog.cs), and a bash
            # cell's fork bomb would otherwise be out of its sight.
            process_group=0,
        )
        sources = [("stdout", self._child.stdout), ("stderr", self._child.stderr)]
        if self.event_pipe:
            os.close(event_write)
            sources.append(("events", os.fdopen(event_read, "rb", buffering=0)))
        for name, pipe in sources:
            threading.Thread(target=self._pump, args=(name, pipe), daemon=True).start()

    def _pump(self, name, pipe):
        buffered = ""
        while True:
            chunk = pipe.read1(65536) if hasattr(pipe, "read1") else pipe.read(65536)
            if not chunk:
                if buffered:
                    self._queue.put((name, buffered))
                self._queue.put((name, None))
                return
            buffered += chunk.decode("utf-8", errors="replace")
            # Hand over what is complete; keep a possible partial marker for the next chunk.
            while MARKER in buffered:
                before, _, buffered = buffered.partition(MARKER)
                if before:
                    self._queue.put((name, before))
                end = buffered.find("\n")
                rest = buffered[: end if end >= 0 else len(buffered)]
                buffered = buffered[end + 1:] if end >= 0 else ""
                self._queue.put((name, (MARKER, rest)))
            keep = len(MARKER) - 1
            tail = buffered[-keep:]
            cut = len(buffered) - keep if any(MARKER.startswith(tail[i:]) for i in range(len(tail))) else len(buffered)
            if cut > 0:
                self._queue.put((name, buffered[:cut]))
                buffered = buffered[cut:]

    def _signal_child(self, signum):
        try:
            os.killpg(self._child.pid, signum)
        except ProcessLookupError:
            pass

    def _restart_child(self):
        self._signal_child(signal.SIGKILL)
        try:
            self._child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._start_child()

    # -- a cell ------------------------------------------------------------------------------------------------
    def send_cell(self, code):
        """Writes the cell to the child's stdin (subclasses frame it)."""
        raise NotImplementedError

    def on_event(self, payload):
        """An event line from fd 3 (JavaScript): results and errors. Returns an error dict or None."""
        return None

    def marker_status(self, name, rest):
        """What the marker on pipe `name` said (bash puts the exit status there). Returns an error dict or None."""
        return None

    def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False, **kwargs):
        error = None
        pending = {"stdout", "stderr"} | ({"events"} if self.event_pipe else set())
        events_buffer = ""
        interrupted_at = None
        died = False
        try:
            self.send_cell(code)
        except (BrokenPipeError, OSError):
            died = True
            pending = set()
        while pending:
            try:
                try:
                    name, item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if interrupted_at is not None and time.monotonic() - interrupted_at > INTERRUPT_GRACE_S:
                        error = error or {"ename": "KeyboardInterrupt", "evalue": "the cell did not stop: its session was restarted, its state is gone", "traceback": []}
                        self._restart_child()
                        break
                    continue
            except KeyboardInterrupt:
                interrupted_at = time.monotonic()
                self._signal_child(signal.SIGINT)
                error = {"ename": "KeyboardInterrupt", "evalue": "interrupted", "traceback": []}
                continue
            if item is None:
                died = True
                pending.discard(name)
                continue
            if isinstance(item, tuple):
                pending.discard(name)
                if name == "events":
                    for line in events_buffer.splitlines():
                        if line.strip():
                            event_error = self.on_event(line)
                            if event_error and not error:
                                error = event_error
                    events_buffer = ""
                status_error = self.marker_status(name, item[1])
                if status_error and not error:
                    error = status_error
                continue
            if name == "events":
                events_buffer += item
                while "\n" in events_buffer:
                    line, _, events_buffer = events_buffer.partition("\n")
                    if line.strip():
                        event_error = self.on_event(line)
                        if event_error and not error:
                            error = event_error
                continue
            if not silent:
                self.send_response(self.iopub_socket, "stream", {"name": name, "text": item})
        if died:
            self._child.wait()
            code_text = self._child.returncode
            error = error or {"ename": "SessionExited", "evalue": f"the {self.language_info['name']} process exited ({code_text}): its state is gone, a new one was started", "traceback": []}
            self._start_child()
        if error:
            if not silent:
                self.send_response(self.iopub_socket, "error", error)
            return {"status": "error", "execution_count": self.execution_count, **error}
        return {"status": "ok", "execution_count": self.execution_count, "payload": [], "user_expressions": {}}

    def do_shutdown(self, restart):
        self._signal_child(signal.SIGKILL)
        return {"status": "ok", "restart": restart}
