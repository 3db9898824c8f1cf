"""The JavaScript and TypeScript kernels of paddock-interp: one persistent Node.js process per context
(node/js-kernel.cjs), which strips a TypeScript cell's types before it runs it."""

import json
import os

from ipykernel.kernelapp import IPKernelApp

from paddock_pipe_kernel import PipeKernel

_NODE_PROGRAM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "node", "js-kernel.cjs")


class JavaScriptKernel(PipeKernel):
    implementation = "paddock-javascript"
    language = "javascript"
    language_info = {"name": "javascript", "mimetype": "application/javascript", "file_extension": ".js"}
    banner = "Node.js, driven by paddock-interp"
    command = ["node", _NODE_PROGRAM]
    event_pipe = True

    def send_cell(self, code):
        self._child.stdin.write((json.dumps({"code": code}) + "\n").encode())
        self._child.stdin.flush()

    def on_event(self, line):
        event = json.loads(line)
        if event.get("type") == "result":
            self.send_response(self.iopub_socket, "execute_result", {
                "execution_count": self.execution_count,
                "data": event["data"],
                "metadata": {},
            })
        elif event.get("type") == "display":
            self.send_response(self.iopub_socket, "display_data", {"data": event["data"], "metadata": {}})
        elif event.get("type") == "error":
            return {"ename": event.get("ename", "Error"), "evalue": event.get("evalue", ""), "traceback": event.get("traceback", [])}
        return None


class TypeScriptKernel(JavaScriptKernel):
    implementation = "paddock-typescript"
    language = "typescript"
    language_info = {"name": "typescript", "mimetype": "text/typescript", "file_extension": ".ts"}
    banner = "TypeScript (types stripped, not checked) on Node.js, driven by paddock-interp"
    command = ["node", _NODE_PROGRAM, "--typescript"]


if __name__ == "__main__":
    # Set by paddock-interp's kernel spec (KernelSpec.TypeScriptSwitch); not passed on to the user's code.
    typescript = os.environ.pop("PADDOCK_JS_TYPESCRIPT", "") == "1"
    IPKernelApp.launch_instance(kernel_class=TypeScriptKernel if typescript else JavaScriptKernel)
