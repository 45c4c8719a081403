"""Export an untrained unidirectional twin of a model (same vocab, labels, sizes) for streams.

python bench/uni_model.py SRC.onnx OUT.onnx
"""

import sys
from pathlib import Path

import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from export.model import IntentSlotRNN, ModelConfig
from export.package import package
from export.parity import ParityCase
from modelspec.meta import ModelMetadata


def main() -> None:
    src = ModelMetadata.from_json(onnx.load(sys.argv[1]).metadata_props[0].value)
    cfg = ModelConfig.from_dict({**src.config, "bidirectional": False})
    torch.manual_seed(0)
    model = IntentSlotRNN(cfg).eval()
    package(
        model,
        src.make_tokenizer(),
        src.intents,
        src.slots,
        sys.argv[2],
        cases=[ParityCase("b2", (5, 3), False)],
    )


if __name__ == "__main__":
    main()
