"""Drive the server with tritonclient (an unmodified Triton client) in its own process.

tritonclient registers the `inference.*` protobuf messages under its own file name, so it
cannot share a process with rnnserve's stubs. Reads a JSON job on stdin, prints JSON results.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException


def main() -> None:
    job = json.load(sys.stdin)
    client = tc.InferenceServerClient(url=job["url"])
    out: dict = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(job["model"]),
        "server": client.get_server_metadata(as_json=True),
        "metadata": client.get_model_metadata(job["model"], as_json=True),
        "config": client.get_model_config(job["model"], as_json=True),
        "runs": [],
    }
    for run in job["runs"]:
        inputs = []
        for name, spec in run["inputs"].items():
            arr = np.asarray(spec["data"], dtype=spec["dtype"])
            inp = tc.InferInput(name, list(arr.shape), spec["datatype"])
            inp.set_data_from_numpy(arr)
            inputs.append(inp)
        outputs = [tc.InferRequestedOutput(n) for n in run.get("outputs", [])] or None
        try:
            res = client.infer(run.get("model", job["model"]), inputs, outputs=outputs)
            names = [o["name"] for o in res.get_response(as_json=True)["outputs"]]
            out["runs"].append({n: res.as_numpy(n).tolist() for n in names})
        except InferenceServerException as exc:
            out["runs"].append({"error": {"status": exc.status(), "message": exc.message()}})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
