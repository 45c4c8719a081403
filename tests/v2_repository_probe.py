"""Drive the model repository extension with tritonclient (its own process: see v2_probe.py).

Reads a JSON job on stdin ({"url", "model", "token"}), prints JSON results.
"""

import json
import sys

import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException


def _index(client: tc.InferenceServerClient, headers: dict) -> list[dict]:
    got = client.get_model_repository_index(headers=headers, as_json=True)
    return got.get("models", [])


def main() -> None:
    job = json.load(sys.stdin)
    client = tc.InferenceServerClient(url=job["url"])
    headers = {"authorization": f"Bearer {job['token']}"} if job.get("token") else {}
    out: dict = {"before": _index(client, headers)}
    client.unload_model(job["model"], headers=headers)
    out["after_unload"] = _index(client, headers)
    out["ready_after_unload"] = client.is_model_ready(job["model"], headers=headers)
    client.load_model(job["model"], headers=headers)
    out["ready_after_load"] = client.is_model_ready(job["model"], headers=headers)
    try:
        client.load_model("nope", headers=headers)
        out["missing"] = "loaded"
    except InferenceServerException as exc:
        out["missing"] = exc.status()
    try:
        client.get_model_repository_index()  # no token
        out["without_token"] = "OK"
    except InferenceServerException as exc:
        out["without_token"] = exc.status()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
