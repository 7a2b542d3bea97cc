"""MindSpore Lite 2.0 side of the bridge: runs inside the CPython 3.7 interpreter that `mindspore-lite`
2.0.0 (the only PyPI release) installs into, or in-process where `mindspore_lite` imports.

Keep this file 3.7-compatible and free of project imports: it is started as a plain script.
Protocol: one JSON request per stdin line; one reply per request on stdout, marked with REPLY so the
lines Lite's C++ code prints there are ignored. Arrays travel as .npy files the caller names.
"""
import json
import sys
import traceback

import numpy as np

REPLY = "@@rare-mslite@@ "


class LiteModels:
    """One built model per batch size: resizing a built Lite 2.0 model to a larger batch after it ran
    crashed the process (measured), so each batch size gets its own model object."""

    def __init__(self):
        import mindspore_lite as mslite

        self.mslite = mslite
        self.path = None
        self.threads = 2
        self.by_batch = {}

    def load(self, path, threads):
        self.path, self.threads, self.by_batch = path, int(threads), {}
        self._model(1)  # fail here, on load, for an unreadable file
        return {"inputs": [list(t.shape) for t in self.by_batch[1].get_inputs()]}

    def _model(self, batch):
        if batch not in self.by_batch:
            context = self.mslite.Context()
            context.target = ["cpu"]
            context.cpu.thread_num = self.threads
            model = self.mslite.Model()
            model.build_from_file(self.path, self.mslite.ModelType.MINDIR, context)
            inputs = model.get_inputs()
            shape = list(inputs[0].shape)
            model.resize(inputs, [[batch] + shape[1:]])
            self.by_batch[batch] = model
        return self.by_batch[batch]

    def predict(self, x):
        model = self._model(int(x.shape[0]))
        inputs = model.get_inputs()
        inputs[0].set_data_from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return model.predict(inputs)[0].get_data_to_numpy()


def convert(onnx_path, output_stem):
    """ONNX -> Lite model with the Python Converter; Lite appends `.mindir` to `output_stem`."""
    import mindspore_lite as mslite

    converter = mslite.Converter()
    converter.optimize = "none"
    converter.convert(mslite.FmkType.ONNX, onnx_path, output_stem)
    return {"file": output_stem + ".mindir", "version": mslite.__version__}


def handle(models, request):
    cmd = request["cmd"]
    if cmd == "convert":
        return convert(request["onnx"], request["output"])
    if cmd == "load":
        return models.load(request["model"], request.get("threads", 2))
    if cmd == "predict":
        np.save(request["output"], models.predict(np.load(request["input"])))
        return {}
    raise ValueError("unknown command " + repr(cmd))


def serve():
    models = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if models is None and request["cmd"] in ("load", "predict"):
                models = LiteModels()
            reply = dict(handle(models, request), ok=True)
        except Exception as e:  # reported to the caller, which raises it with the file name
            reply = {"ok": False, "error": "{}: {}".format(type(e).__name__, e), "trace": traceback.format_exc()}
        sys.stdout.write(REPLY + json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
