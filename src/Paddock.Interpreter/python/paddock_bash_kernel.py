"""The bash kernel of paddock-interp: one persistent bash per context (variables, cwd and functions stay)."""

import os
import tempfile

from ipykernel.kernelapp import IPKernelApp

from paddock_pipe_kernel import MARKER, PipeKernel


class BashKernel(PipeKernel):
    implementation = "paddock-bash"
    language = "bash"
    language_info = {"name": "bash", "mimetype": "text/x-sh", "file_extension": ".sh", "codemirror_mode": "shell"}
    banner = "bash, driven by paddock-interp"
    command = ["bash", "--noprofile", "--norc"]

    def _start_child(self):
        super()._start_child()
        # A SIGINT (an interrupt) stops the running command, not the session: bash runs the trap and goes on.
        self._child.stdin.write(b"trap ':' INT\n")
        self._child.stdin.flush()

    def send_cell(self, code):
        # The cell goes through a file, so that a syntax error in it cannot swallow the marker commands.
        fd, path = tempfile.mkstemp(prefix="paddock-cell-", suffix=".sh")
        with os.fdopen(fd, "w") as f:
            f.write(code + "\n")
        line = (
            f"source {path}; __paddock_status=$?; rm -f {path}; "
            f"printf '%s%s\\n' '{MARKER}' \"$__paddock_status\"; printf '%s\\n' '{MARKER}' >&2\n"
        )
        self._child.stdin.write(line.encode())
        self._child.stdin.flush()

    def marker_status(self, name, rest):
        if name == "stdout" and rest.strip() not in ("", "0"):
            status = rest.strip()
            return {"ename": "ExitCode", "evalue": f"the cell's last command exited with status {status}", "traceback": [f"exit status {status}"]}
        return None


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=BashKernel)
