"""Loading models from the repository into the registry, at start and while serving.

A version is loaded and checked (metadata, graph, parity figures) and warmed up off the event
loop, then swapped in whole; one that fails leaves the version before it serving and is
reported in the repository index. Modes (Triton's names): `none` loads once at start, `poll`
rescans every --repository-poll-seconds, `explicit` changes only on RepositoryModelLoad and
RepositoryModelUnload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor

from server.errors import FailedPrecondition, ModelLoadError, NotFound, load_error
from server.metrics import Metrics
from server.model import UNAVAILABLE, ModelRegistry, ServedModel, load_model
from server.repository import Mark, ModelSource, RepositoryError, VersionFile
from server.settings import BatchSettings, LimitSettings, RuntimeSettings

log = logging.getLogger("rnnserve.repository")

MODES = ("none", "poll", "explicit")
UNREADABLE = "the model repository cannot be read"


class ModelLoader:
    """Keeps the registry in step with the repository, as the control mode allows."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        source: Callable[[], dict[str, ModelSource]],
        mode: str,
        runtime: RuntimeSettings,
        batching: BatchSettings,
        limits: LimitSettings,
        executor: Executor | None,
        metrics: Metrics,
    ) -> None:
        self.registry = registry
        self.source = source
        self.mode = mode
        self.runtime = runtime
        self.batching = batching
        self.limits = limits
        self.executor = executor
        self.metrics = metrics
        self.stamps: dict[tuple[str, str], Mark] = {}  # what each loaded version was made of
        self.failed: dict[tuple[str, str], str] = {}  # versions whose file failed, and why
        self.unloaded: set[str] = set()  # explicitly unloaded: polling leaves them out
        self.unreadable = ""  # why the repository could not be read at the last scan
        self.named_default = False  # --default-model was given (else: the first that loads)
        self._lock = asyncio.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-load")

    # ------------------------------------------------------------------ one version

    def _load(self, src: ModelSource, version: str, vf: VersionFile, warm: bool) -> ServedModel:
        """Load (and warm) one version; ModelLoadError says why it cannot be served."""
        model = load_model(
            vf.path,
            name=src.name,
            version=version,
            runtime=self.runtime,
            batching=src.batching(self.batching),
            limits=self.limits,
            executor=self.executor,
            metrics=self.metrics,
        )
        if warm:
            self._warm(model, self.runtime.warmup_runs)
        return model

    @staticmethod
    def _warm(model: ServedModel, runs: int) -> None:
        """Run a loaded version `runs` times; ModelLoadError when a run fails (a graph that
        loads but cannot run: the file's fault, not the server's)."""
        try:
            model.runtime.warmup(runs)
        except Exception as exc:  # onnxruntime raises several unrelated types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise load_error(model.runtime.path, "failed its warm-up runs", first) from None

    async def warm_all(self, runs: int, executor: Executor) -> None:
        """At start: warm every loaded version on `executor`. One whose runs fail stops serving
        and is reported as a failed load; ModelLoadError when no default model is left."""
        loop, problems = asyncio.get_running_loop(), []
        for model in list(self.registry):
            try:
                await loop.run_in_executor(executor, self._warm, model, runs)
            except ModelLoadError as exc:
                problems.append(str(exc))
                self.registry.remove(model.name, model.version, exc.public)
                self.failed[(model.name, model.version)] = exc.public  # retried once it changes
                log.warning(
                    "model version not loaded",
                    extra={"model": model.name, "version": model.version, "reason": str(exc)},
                )
        self._pick_default(problems)

    def _failed(self, name: str, version: str, reason: str) -> None:
        """Record a version whose file did not load: rnnserve_model_ready reads 0 for it,
        unless an earlier file of the same version still serves."""
        self.registry.fail(name, version, reason)
        if version not in self.registry.versions(name):
            self.metrics.model_ready.labels(name, version).set(0)

    def _wanted(self, names: Iterable[str] | None) -> dict[str, ModelSource] | None:
        """The named models (all, when None) as the repository holds them; None when it cannot
        be read (moved, unmounted, not listable): then nothing is loaded or retired."""
        try:
            found = self.source()
        except RepositoryError as exc:
            if str(exc) != self.unreadable:  # once per outage, not once per poll
                log.warning(
                    "repository unreadable; the models loaded stay served",
                    extra={"reason": str(exc)},
                )
            self.unreadable = str(exc)
            return None
        self.unreadable = ""
        if names is None:
            return {n: s for n, s in found.items() if n not in self.unloaded}
        return {
            n: found.get(n, ModelSource(n, error=f"no model {n!r}", reason=f"no model {n!r}"))
            for n in names
        }

    # ------------------------------------------------------------------ at start

    def load_initial(self) -> None:
        """Load every model the repository holds (not warmed: the app warms up before
        SERVING). A lone model file that fails is a start-up error; in a repository, a failed
        model is reported and the rest are served, unless none can be."""
        wanted = self._wanted(None) or {}
        problems = []
        for src in wanted.values():
            if src.error:
                self.registry.fail(src.name, "", src.reason)
                problems.append(src.error)
            for version, vf in src.versions.items():
                try:
                    model = self._load(src, version, vf, warm=False)
                except ModelLoadError as exc:  # kept, so polling retries it only once changed
                    self._failed(src.name, version, exc.public)
                    self.failed[(src.name, version)] = exc.public
                    problems.append(str(exc))
                else:
                    self.registry.add(model)
                self.stamps[(src.name, version)] = src.mark(vf)
        self.named_default = bool(self.registry.default)
        self._pick_default(problems)
        for problem in problems:
            log.warning("model not loaded", extra={"reason": problem})

    def _pick_default(self, problems: list[str]) -> None:
        """The default model: the one named, else the first by name that loaded."""
        if not any(True for _ in self.registry):
            alone = "the model repository holds no model besides any encoder-decoder (needs one)"
            raise ModelLoadError(problems[0] if problems else alone)
        if not self.named_default:
            self.registry.default = min(m.name for m in self.registry)
        if not self.registry.versions(self.registry.default):
            raise ModelLoadError(f"the default model {self.registry.default!r} is not loaded")

    # ------------------------------------------------------------------ while serving

    async def sync(self, names: Iterable[str] | None = None) -> list[str]:
        """Bring the named models (all, when None) in step with the repository: load new or
        changed versions, retire versions no longer selected. Returns the failures."""
        async with self._lock:
            wanted = self._wanted(names)
            if wanted is None:
                return [UNREADABLE]
            loop = asyncio.get_running_loop()
            failures = []
            for src in wanted.values():
                entry = self.registry.entries.get(src.name)
                before = entry.status.get("") if entry is not None else None
                if src.error:  # clients read the reason, the log the paths (once a problem)
                    if before != (UNAVAILABLE, src.reason):
                        log.warning("model not loaded", extra={"reason": src.error})
                    self.registry.fail(src.name, "", src.reason)
                    failures.append(src.reason)
                    continue
                if entry is not None:  # readable again: its folder's old problem is gone
                    entry.status.pop("", None)
                failed = False
                for key in [k for k in self.failed if k[0] == src.name]:
                    if key[1] not in src.versions:  # its file is gone: nothing to wait for
                        self._forget(key, "no longer in the repository's policy")
                for version, vf in src.versions.items():
                    key = (src.name, version)
                    if self.stamps.get(key) == src.mark(vf):
                        if key in self.failed:  # unchanged since it failed: still not serving
                            failures.append(self.failed[key])
                            failed = True
                        continue
                    try:
                        model = await loop.run_in_executor(
                            self._pool, self._load, src, version, vf, True
                        )
                    except ModelLoadError as exc:  # clients read exc.public, the log all
                        self._failed(src.name, version, exc.public)
                        self.stamps[key] = src.mark(vf)  # retried when it changes
                        self.failed[key] = exc.public
                        failures.append(exc.public)
                        failed = True
                        log.warning(
                            "model version not loaded",
                            extra={"model": src.name, "version": version, "reason": str(exc)},
                        )
                        continue
                    if model.batcher is not None:
                        model.batcher.start()
                    self.registry.add(model)
                    self.stamps[key] = src.mark(vf)
                    self.failed.pop(key, None)
                    log.info("model version serving", extra={"model": src.name, "version": version})
                if not failed:  # a failed replacement leaves the versions serving before,
                    # until a later file of it loads or the policy stops selecting it
                    self._retire(
                        src.name, set(src.versions), "no longer in the repository's policy"
                    )
            if names is None:  # models gone from the repository
                for name, entry in list(self.registry.entries.items()):
                    if name not in wanted:
                        entry.status.pop("", None)  # its folder's problem went with it
                        for key in [k for k in self.failed if k[0] == name]:
                            self._forget(key, "removed from the repository")
                        self._retire(name, set(), "removed from the repository")
            return failures

    def _forget(self, key: tuple[str, str], reason: str) -> None:
        """A version that failed to load is no longer in the repository: say so instead."""
        del self.failed[key]
        self.stamps.pop(key, None)
        if key[1] not in self.registry.entries[key[0]].versions:  # else retired with the rest
            self.registry.remove(*key, reason)

    def _retire(self, name: str, keep: set[str], reason: str) -> None:
        entry = self.registry.entries.get(name)
        if entry is None:
            return
        for version in list(entry.versions):
            if version not in keep:
                self.registry.remove(name, version, reason)
                self.stamps.pop((name, version), None)
                log.info("model version retired", extra={"model": name, "version": version})

    async def load(self, name: str) -> None:
        """RepositoryModelLoad: load or reload a model (explicit mode only)."""
        self._explicit()
        try:
            known = name in self.source()
        except RepositoryError:
            known = False
        if not known:
            raise NotFound(f"no model {name!r} in the repository")
        self.unloaded.discard(name)
        failures = await self.sync([name])
        if failures:
            serving = ", ".join(self.registry.versions(name)) or "none"
            raise FailedPrecondition(
                f"model {name!r} did not load: {failures[0]} (versions serving: {serving})"
            )

    async def unload(self, name: str) -> None:
        """RepositoryModelUnload: stop serving every version of a model (explicit mode only).
        A model already unloaded, or that failed to load, is unloaded: the call succeeds."""
        self._explicit()
        async with self._lock:
            if not name or name not in self.registry.entries:
                raise NotFound(f"unknown model {name!r}")
            self.unloaded.add(name)
            self._retire(name, set(), "unloaded")

    def _explicit(self) -> None:
        if self.mode != "explicit":
            raise FailedPrecondition(
                f"model control mode is {self.mode!r}: loading and unloading need "
                "--model-control-mode explicit"
            )

    async def poll(self, period: float) -> None:
        """Rescan the repository every `period` seconds (run as a task in poll mode)."""
        while True:
            await asyncio.sleep(period)
            try:
                await self.sync()
            except Exception:  # one bad scan must not end polling for the server's life
                log.exception("repository scan failed; the next one follows")

    def close(self) -> None:
        """Stop the loading thread."""
        self._pool.shutdown(wait=False)
