"""An encoder–decoder's generation settings: the server's defaults, then its repository
folder's config.json (`max_batch_size`, and `generation`: `batching` and GenerationLimits'
fields), each key and value checked and named when wrong."""

from __future__ import annotations

import json
from dataclasses import replace

from server.errors import ModelLoadError
from server.generation import ADMIT_MODES
from server.repository import CONFIG_FILE, ModelSource
from server.seq2seq import GenerationLimits


def generation_config(
    src: ModelSource, limits: GenerationLimits, admit: str
) -> tuple[GenerationLimits, str]:
    """Limits and batching mode of `src`: `limits` and `admit`, then its config.json's
    max_batch_size and generation settings; ModelLoadError names a bad one."""
    if src.max_batch_size:
        limits = replace(limits, max_batch_rows=src.max_batch_size)
    folder = next(iter(src.versions.values())).path.parent.parent if src.versions else None
    path = folder / CONFIG_FILE if folder else None
    if path is None or not path.is_file():
        return limits, admit
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # the reader's words: the log only
        what = f"{CONFIG_FILE}: not a readable JSON file"
        raise ModelLoadError(f"{path}: not a readable JSON file ({exc})", public=what) from None
    try:
        conf = data.get("generation", {}) if isinstance(data, dict) else None
        if not isinstance(conf, dict):
            raise ValueError("generation must be an object")
        mode = conf.pop("batching", admit)
        if mode not in ADMIT_MODES:
            raise ValueError(f"batching must be one of {', '.join(ADMIT_MODES)}")
        for key, value in conf.items():
            if key not in GenerationLimits.__dataclass_fields__:
                raise ValueError(f"unknown setting {key!r}")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a whole number >= 1, not {value!r}")
        limits = replace(limits, **conf)
        if limits.default_steps > limits.max_steps:
            raise ValueError(f"default_steps {limits.default_steps} is over max_steps")
    except ValueError as exc:  # our own words, naming the setting: no path, no parser text
        what = f"bad generation settings ({exc})"
        raise ModelLoadError(f"{path}: {what}", public=what) from None
    return limits, mode
