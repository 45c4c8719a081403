"""The model repository on disk: which models and versions it holds, and which to serve.

Triton's layout: `DIR/<model>/<version>/model.onnx`, with an optional `DIR/<model>/config.json`
holding the version policy (`{"latest": {"num_versions": N}}`, `{"all": {}}` or
`{"specific": {"versions": [..]}}`, Triton's names) and the model's batching
(`max_batch_size`, `max_batch_delay_us`, as the flags). A file `DIR/<model>.onnx` is a model of
one version, 1; `--model FILE` is a repository of that one file. Pure functions of the disk:
no onnxruntime, no grpc.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelspec.seq2seq import ENCODER_FILE
from server.settings import BatchSettings

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.json"
CONFIG_KEYS = ("version_policy", "max_batch_size", "max_batch_delay_us", "generation")
FLAT_VERSION = "1"


class RepositoryError(ValueError):
    """A model's folder or config cannot be read. The message names the file (for the
    operator); `public` says what is wrong without the server's paths (for clients)."""

    def __init__(self, where: object, what: str, detail: str = "") -> None:
        super().__init__(f"{where}: {what}" + (f" ({detail})" if detail else ""))
        self.public = f"{Path(str(where)).name}: {what}"


@dataclass(frozen=True)
class VersionFile:
    """One version's file and the stamp that says whether it changed since it was loaded."""

    path: Path
    stamp: tuple[int, int, int]  # mtime_ns, size, inode


# A version's file stamp and the config.json batching it is loaded with: a change to either (a
# new file, or a new max_batch_size) loads the version again.
Mark = tuple[tuple[int, int, int], int | None, int | None]


@dataclass(frozen=True)
class ModelSource:
    """A model as the repository holds it: its versions (selected by its policy) and config."""

    name: str
    versions: dict[str, VersionFile] = field(default_factory=dict)
    max_batch_size: int | None = None
    max_batch_delay_us: int | None = None
    error: str = ""  # why the model cannot be read (then it has no versions), for the log
    reason: str = ""  # the same without the server's paths: what clients read

    def batching(self, server: BatchSettings) -> BatchSettings:
        """The server's batching with this model's config.json over it."""
        return replace(
            server,
            max_batch_size=self.max_batch_size or server.max_batch_size,
            max_batch_delay_us=(
                server.max_batch_delay_us
                if self.max_batch_delay_us is None
                else self.max_batch_delay_us
            ),
        )

    def mark(self, vf: VersionFile) -> Mark:
        """What a version loaded from `vf` is made of: a change loads it again."""
        return (vf.stamp, self.max_batch_size, self.max_batch_delay_us)


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _whole(value: object) -> bool:
    """A JSON integer (JSON's true and false are Python ints, and no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _policy(config: dict[str, Any], versions: list[int], where: Path) -> list[int]:
    """The versions a policy selects (default: the newest one)."""
    policy = config.get("version_policy", {"latest": {"num_versions": 1}})
    if not isinstance(policy, dict) or len(policy) != 1:
        raise RepositoryError(where, "version_policy must be one of latest, all, specific")
    ((kind, args),) = policy.items()
    args = args or {}
    if kind == "all":
        return versions
    if kind == "latest":
        n = args.get("num_versions", 1)
        if not _whole(n) or n < 1:
            raise RepositoryError(where, "latest.num_versions must be a positive integer")
        return sorted(versions)[-n:]
    if kind == "specific":
        wanted = args.get("versions", [])
        if not isinstance(wanted, list) or not all(_whole(v) for v in wanted):
            raise RepositoryError(where, "specific.versions must be a list of integers")
        return [v for v in versions if v in wanted]
    raise RepositoryError(where, "version_policy must be one of latest, all, specific")


def _config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RepositoryError(path, "not a readable JSON file", str(exc)) from None
    if not isinstance(data, dict):
        raise RepositoryError(path, "must hold a JSON object")
    for key in data:  # a misspelt key would otherwise be ignored without a word
        if key not in CONFIG_KEYS:
            near = difflib.get_close_matches(key, CONFIG_KEYS, n=1)
            said = f" (did you mean {near[0]!r}?)" if near else ""
            raise RepositoryError(
                path, f"unknown key {key!r}{said}; known: {', '.join(CONFIG_KEYS)}"
            )
    for key in ("max_batch_size", "max_batch_delay_us"):
        value = data.get(key)
        if value is not None and (not _whole(value) or value < 0):
            raise RepositoryError(path, f"{key} must be a non-negative integer")
    return data


def _numbered(name: str) -> bool:
    """A version folder's name: ASCII digits (str.isdigit also takes '²', which int refuses)."""
    return name.isascii() and name.isdigit()


def is_seq2seq(folder: Path) -> bool:
    """An encoder–decoder folder: a version folder holds encoder.onnx (and step.onnx)."""
    try:
        return any(
            (p / ENCODER_FILE).is_file()
            for p in folder.iterdir()
            if _numbered(p.name) and p.is_dir()
        )
    except OSError:
        return False


def _folder(folder: Path, model_file: str = MODEL_FILE) -> ModelSource:
    name = folder.name
    try:
        config = _config(folder)
        names = [p.name for p in folder.iterdir() if _numbered(p.name) and p.is_dir()]
        for padded in [n for n in names if str(int(n)) != n]:  # 01 would read as 1's folder
            what = f"a version folder is named by its number, without leading zeros ({int(padded)})"
            raise RepositoryError(folder / padded, what)
        present = [int(n) for n in names if (folder / n / model_file).is_file()]
        chosen = _policy(config, sorted(present), folder / CONFIG_FILE)
        versions = {
            str(v): VersionFile(p, _stamp(p))
            for v in chosen
            for p in [folder / str(v) / model_file]
        }
    except RepositoryError as exc:
        return ModelSource(name, error=str(exc), reason=exc.public)
    except OSError as exc:
        return _failed(name, folder, "the model's folder cannot be read", exc.strerror or "")
    if not versions and present:
        held = ", ".join(str(v) for v in sorted(present))
        what = f"version_policy selects none of the versions held ({held})"
        error = f"{folder / CONFIG_FILE}: {what}"
        return ModelSource(name, error=error, reason=f"{CONFIG_FILE}: {what}")
    if not versions:
        return _failed(name, folder, f"no version folder holds {model_file}")
    return ModelSource(
        name,
        versions,
        max_batch_size=config.get("max_batch_size"),
        max_batch_delay_us=config.get("max_batch_delay_us"),
    )


def _failed(name: str, where: Path, what: str, detail: str = "") -> ModelSource:
    """A model that cannot be served: the log reads `where` and `detail`, clients `what`."""
    error = f"{where}: {what}" + (f" ({detail})" if detail else "")
    return ModelSource(name, error=error, reason=what)


def single(path: Path, name: str) -> dict[str, ModelSource]:
    """A repository of one model file (`--model FILE`), version 1."""
    if path.is_dir():
        what = "the model file is a folder: serve it with --model-repository"
        return {name: _failed(name, path, what)}
    try:
        versions = {FLAT_VERSION: VersionFile(path, _stamp(path))}
    except OSError:
        return {name: _failed(name, path, "no such model file")}
    return {name: ModelSource(name, versions)}


def scan(root: Path) -> dict[str, ModelSource]:
    """Every model under `root`, by name (RepositoryError when `root` is not a folder or
    cannot be listed: then nothing about it is known, and nothing should change)."""
    if not root.is_dir():
        raise RepositoryError(root, "the model repository is not a folder")
    try:
        return _scan(root)
    except OSError as exc:  # unlisted, or an entry gone between listing and reading it
        raise RepositoryError(root, "cannot read", exc.strerror or str(exc)) from None


def _scan(root: Path) -> dict[str, ModelSource]:
    out: dict[str, ModelSource] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if not is_seq2seq(entry):  # encoder–decoders: scan_seq2seq
                out[entry.name] = _folder(entry)
        elif entry.suffix == ".onnx" and entry.is_file():
            name = entry.name[: -len(".onnx")]
            if name in out or (root / name).is_dir():
                out[name] = _failed(name, entry, f"{name} is also a folder")
                continue
            out[name] = ModelSource(name, {FLAT_VERSION: VersionFile(entry, _stamp(entry))})
    return out


def scan_seq2seq(root: Path) -> dict[str, ModelSource]:
    """Every encoder–decoder model under `root`; a version's path is its encoder.onnx."""
    if not root.is_dir():
        return {}
    return {
        e.name: _folder(e, ENCODER_FILE)
        for e in sorted(root.iterdir())
        if e.is_dir() and not e.name.startswith(".") and is_seq2seq(e)
    }
