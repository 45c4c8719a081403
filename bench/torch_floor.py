"""torch eager latency at batch 1 (its own process: torch and onnxruntime starve each other).

python bench/torch_floor.py CHECKPOINT < texts.json  ->  {"batch": 1, "p50_us": ..., "p99_us": ...}
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from export.train import load_checkpoint


def main() -> None:
    torch.set_num_threads(1)
    ck = load_checkpoint(sys.argv[1])
    model, tok = ck.model.eval(), ck.tokenizer
    rows = [torch.tensor([tok.ids(tok.tokenize(t))]) for t in json.loads(sys.stdin.read())]
    lat = []
    with torch.no_grad():
        for r in rows[:20]:
            model(r, torch.tensor([r.shape[1]]), model.zero_state(1))
        t_end, i = time.perf_counter() + 1.0, 0
        while time.perf_counter() < t_end:
            r = rows[i % len(rows)]
            t = time.perf_counter()
            model(r, torch.tensor([r.shape[1]]), model.zero_state(1))
            lat.append(time.perf_counter() - t)
            i += 1
    us = np.asarray(lat) * 1e6
    print(
        json.dumps(
            {
                "batch": 1,
                "p50_us": float(np.percentile(us, 50)),
                "p99_us": float(np.percentile(us, 99)),
            }
        )
    )


if __name__ == "__main__":
    main()
