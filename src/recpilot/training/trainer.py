"""The training loop of the neural models: AdamW, warm-up + cosine, early stopping, resume.

`Trainer` is model-agnostic. It is given a module, a batch source (anything with
``n_batches``, ``n_sequences`` and ``epoch(rng)``, e.g. `SequenceBatcher`), a function from a
batch to the scalar loss, and optionally a validation function returning metrics; it owns the
optimiser, the learning-rate schedule, gradient clipping, seeding, early stopping on
``config.monitor``, the best state (kept in memory and restored at the end), checkpoints with
resume, the JSONL log and the progress bar.

Determinism: the module's parameters, the batch order (a numpy ``Generator``) and torch's
global generator (dropout, negative sampling) are seeded from ``seed``; torch's generator is
forked, so the caller's random state is untouched. With the same thread count and no time
budget, two runs give identical weights. A resumed run continues with the saved generators,
optimiser moments and schedule position, so it ends where an uninterrupted run would.

Checkpoints (``config.checkpoint_dir``), written after every validation, each directory
replaced atomically, never pickled::

    DIR/last/module.safetensors      module weights
    DIR/last/optimizer.safetensors   AdamW moments and step counts
    DIR/last/rng.safetensors         torch generator state
    DIR/last/state.json              epoch, step, best metric, numpy generator, history
    DIR/best/module.safetensors      weights of the best validation so far
"""

from __future__ import annotations

import functools
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from recpilot.config import TrainerConfig
from recpilot.models.artifact import replace_dir, write_json_atomic
from recpilot.progress import progress_bar

logger = logging.getLogger(__name__)

B = TypeVar("B", bound=Sized)
B_co = TypeVar("B_co", bound=Sized, covariant=True)


class BatchSource(Protocol[B_co]):
    """What the trainer iterates over (see `recpilot.training.batching.SequenceBatcher`)."""

    @property
    def n_batches(self) -> int: ...

    @property
    def n_sequences(self) -> int: ...

    def epoch(self, rng: np.random.Generator) -> Iterator[B_co]: ...


@dataclass
class TrainingResult:
    """What happened during `Trainer.fit`.

    Attributes:
        epochs: epochs run (a partial last epoch counts).
        steps: optimiser steps.
        best_epoch: epoch of the restored best state (None without validation).
        best_metric: its validation value of ``monitor``.
        monitor: the metric early stopping watched.
        stopped: ``"max_epochs"``, ``"early_stopping"`` or ``"time_budget"``.
        seconds: wall time, validation included (summed over resumed runs).
        history: one record per epoch (the lines of the JSONL log).
    """

    epochs: int
    steps: int
    best_epoch: int | None
    best_metric: float | None
    monitor: str
    stopped: str
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


# -- optimiser and schedule -----------------------------------------------------------------------
def parameter_groups(
    module: nn.Module, weight_decay: float, decay_embeddings: bool = False
) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weight matrices only.

    Biases, LayerNorm parameters and (unless ``decay_embeddings``) embedding tables are not
    decayed: shrinking them toward zero regularises nothing useful.

    Args:
        module: the model.
        weight_decay: decay of the decayed group.
        decay_embeddings: put `nn.Embedding` weights in the decayed group.

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay}, {"params": rest, ...: 0.0}]``.
    """
    embedding_ids = {
        id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding | nn.EmbeddingBag)
    }
    decay: list[nn.Parameter] = []
    rest: list[nn.Parameter] = []
    for p in module.parameters():
        if not p.requires_grad:
            continue
        is_matrix = p.dim() >= 2 and (decay_embeddings or id(p) not in embedding_ids)
        (decay if is_matrix else rest).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]


def make_optimizer(module: nn.Module, config: TrainerConfig) -> torch.optim.AdamW:
    """AdamW over `parameter_groups`, fused on CPU where torch supports it."""
    groups = parameter_groups(module, config.weight_decay, config.decay_embeddings)
    try:
        return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.betas, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - older builds without fused CPU AdamW
        return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.betas)


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warm-up to ``peak`` over ``warmup_steps``, then cosine decay to ``floor``.

    The decay's progress is the larger of the step fraction (over ``total_steps``) and the
    time fraction (over a wall-clock budget, when there is one).
    """

    peak: float
    floor: float
    warmup_steps: int
    total_steps: int

    def __call__(self, step: int, time_fraction: float = 0.0) -> float:
        """Learning rate of optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        p = min(1.0, max((step - self.warmup_steps) / span, time_fraction))
        return self.floor + (self.peak - self.floor) * 0.5 * (1.0 + math.cos(math.pi * p))


# -- helpers --------------------------------------------------------------------------------------
@contextmanager
def torch_threads(n: int | None, flush_denormal: bool = False) -> Iterator[None]:
    """Use ``n`` torch threads inside the block (None: leave the setting alone).

    With ``flush_denormal``, denormal floats are flushed to zero inside the block (and the
    default, keeping them, is restored after): x86 arithmetic on denormals is up to 100×
    slower, and training produces them in softmax tails and squared small gradients.
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    if flush_denormal:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_num_threads(old)
        if flush_denormal:
            torch.set_flush_denormal(False)


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX-BF16).

    Without it, bf16 products are emulated and slower than fp32. Read from /proc/cpuinfo;
    False where that file does not exist.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when available) as a `torch.device`.

    Raises:
        RuntimeError: ``"cuda"`` asked for where torch sees no GPU.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "training.device is 'cuda' but torch sees no GPU (a CPU build, or no device); "
            "use device 'cpu' or 'auto'"
        )
    return torch.device(name)


def _to_device(batch: B, device: torch.device) -> B:
    """A batch with a ``to(device)`` method moved there; others are passed as they are."""
    move = getattr(batch, "to", None)
    return move(device) if callable(move) else batch


def _clone_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _optimizer_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Flatten an optimiser state dict into tensors (safetensors) and JSON-able groups."""
    state = optimizer.state_dict()
    tensors = {
        f"{pid}.{key}": (value if torch.is_tensor(value) else torch.tensor(value)).contiguous()
        for pid, slots in state["state"].items()
        for key, value in slots.items()
    }
    return tensors, state["param_groups"]


def _optimizer_state(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": groups}


class Trainer:
    """Train a module (see the module docstring).

    Args:
        config: optimisation, schedule, stopping, checkpoint and logging options.
        module: the model to train (modified in place; ends holding the best state).
        seed: seeds the batch order and torch's generator.

    Example:
        >>> trainer = Trainer(TrainerConfig(max_epochs=5), module, seed=0)  # doctest: +SKIP
        >>> result = trainer.fit(batcher, loss_fn, validate)  # doctest: +SKIP
    """

    def __init__(self, config: TrainerConfig, module: nn.Module, seed: int = 0) -> None:
        self.config = config
        self.module = module
        self.seed = seed

    # -- public ----------------------------------------------------------------------------------
    def fit(
        self,
        batches: BatchSource[B],
        loss_fn: Callable[[B], torch.Tensor],
        validate: Callable[[], dict[str, float]] | None = None,
    ) -> TrainingResult:
        """Train until ``max_epochs``, early stopping or the time budget.

        Args:
            batches: the training batch source.
            loss_fn: batch → scalar loss (called in train mode, under autocast for bf16).
            validate: returns validation metrics, including ``config.monitor``; called in
                eval mode every ``validate_every`` epochs and after the last epoch. Without
                it, the final state is kept.

        Returns:
            A `TrainingResult`; the module holds the best (or final) state.

        Raises:
            FloatingPointError: when the loss becomes NaN or infinite.
        """
        device = resolve_device(self.config.device)
        self.module.to(device)
        with (
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
            torch_threads(self.config.threads, self.config.flush_denormal),
        ):
            torch.manual_seed(self.seed)
            return self._fit(batches, loss_fn, validate, device)

    # -- internals -------------------------------------------------------------------------------
    def _fit(
        self,
        batches: BatchSource[B],
        loss_fn: Callable[[B], torch.Tensor],
        validate: Callable[[], dict[str, float]] | None,
        device: torch.device,
    ) -> TrainingResult:
        cfg = self.config
        module = self.module
        rng = np.random.default_rng(self.seed)
        optimizer = make_optimizer(module, cfg)
        n_batches = batches.n_batches
        schedule = WarmupCosine(
            peak=cfg.learning_rate,
            floor=cfg.learning_rate * cfg.min_lr_ratio,
            warmup_steps=max(1, round(cfg.warmup_epochs * n_batches)),
            total_steps=cfg.max_epochs * n_batches,
        )
        budget = cfg.max_minutes * 60.0 if cfg.max_minutes is not None else None
        params = [p for p in module.parameters() if p.requires_grad]

        run = _RunState()
        best_state: dict[str, torch.Tensor] | None = None
        if cfg.checkpoint_dir is not None and cfg.resume:
            resumed = self._load_checkpoint(Path(cfg.checkpoint_dir), optimizer, rng, n_batches)
            if resumed is not None:
                run, best_state = resumed

        started = time.perf_counter() - run.elapsed
        stopped = "max_epochs"
        if validate is not None and run.bad >= cfg.patience:
            stopped = "early_stopping"  # a resumed run that had already stopped
        lr = schedule(run.step)
        while run.epoch < cfg.max_epochs and stopped == "max_epochs":
            epoch = run.epoch + 1
            module.train()
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            n_steps = n_seen = 0
            partial = False
            bar = progress_bar(
                batches.n_sequences,
                f"epoch {epoch}/{cfg.max_epochs}" + run.last_summary,
                unit="seq",
                disable=None if cfg.show_progress is None else not cfg.show_progress,
            )
            for cpu_batch in batches.epoch(rng):
                batch = _to_device(cpu_batch, device)
                elapsed = time.perf_counter() - started
                lr = schedule(run.step, elapsed / budget if budget else 0.0)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(
                    device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"
                ):
                    loss = loss_fn(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
                optimizer.step()
                loss = loss.detach()
                if device.type == "cpu" and not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"training diverged: the loss is {loss.item()} at epoch {epoch}, step "
                        f"{run.step}; lower training.learning_rate or use precision fp32"
                    )
                loss_sum += loss
                run.step += 1
                n_steps += 1
                n_seen += len(batch)
                bar.update(len(batch))
                if not bar.disable and (n_steps % 10 == 0 or n_steps == n_batches):
                    # the running mean of this epoch's loss (a sync on a GPU, every 10 steps)
                    bar.set_postfix_str(f"loss {float(loss_sum) / n_steps:.4f}, lr {lr:.2e}")
                if budget is not None and time.perf_counter() - started >= budget:
                    partial = n_steps < n_batches
                    stopped = "time_budget"
                    break
            bar.close()
            if not torch.isfinite(loss_sum):  # on a GPU: checked once an epoch (no sync a step)
                raise FloatingPointError(
                    f"training diverged: the loss is not finite in epoch {epoch}; lower "
                    "training.learning_rate or use precision fp32"
                )
            train_seconds = time.perf_counter() - t0
            run.epoch = epoch
            record: dict[str, Any] = {
                "epoch": epoch,
                "step": run.step,
                "loss": float(loss_sum) / max(1, n_steps),
                "lr": lr,
                "train_seconds": round(train_seconds, 3),
                "sequences_per_second": round(n_seen / max(train_seconds, 1e-9), 1),
            }
            if partial:
                record["partial"] = True
            last = stopped != "max_epochs" or epoch >= cfg.max_epochs
            if validate is not None and (epoch % cfg.validate_every == 0 or last):
                t1 = time.perf_counter()
                module.eval()
                with torch.no_grad():
                    metrics = validate()
                module.train()
                if cfg.monitor not in metrics:
                    raise KeyError(
                        f"validation returned {sorted(metrics)}, not the monitored "
                        f"metric {cfg.monitor!r} (training.monitor)"
                    )
                value = float(metrics[cfg.monitor])
                record["validation"] = {k: float(v) for k, v in metrics.items()}
                record["validation_seconds"] = round(time.perf_counter() - t1, 3)
                improved = run.best_epoch is None or value > run.best_metric
                record["improved"] = improved
                if improved:
                    run.best_metric, run.best_epoch, run.bad = value, epoch, 0
                    best_state = _clone_state(module)
                else:
                    run.bad += 1
                    if run.bad >= cfg.patience and stopped == "max_epochs":
                        stopped = "early_stopping"
            record["elapsed_seconds"] = round(time.perf_counter() - started, 3)
            run.elapsed = record["elapsed_seconds"]
            run.history.append(record)
            run.last_summary = f" (loss {record['loss']:.4f})"
            self._log_epoch(record, run)
            if cfg.checkpoint_dir is not None and "validation" in record:
                self._save_checkpoint(
                    Path(cfg.checkpoint_dir), optimizer, rng, run, record["improved"], n_batches
                )
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        return TrainingResult(
            epochs=run.epoch,
            steps=run.step,
            best_epoch=run.best_epoch,
            best_metric=run.best_metric if run.best_epoch is not None else None,
            monitor=cfg.monitor,
            stopped=stopped,
            seconds=time.perf_counter() - started,
            history=run.history,
        )

    def _log_epoch(self, record: dict[str, Any], run: _RunState) -> None:
        cfg = self.config
        val = record.get("validation")
        logger.info(
            "epoch %d: loss %.4f, %.1fs (%.0f seq/s), lr %.2e%s",
            record["epoch"],
            record["loss"],
            record["train_seconds"],
            record["sequences_per_second"],
            record["lr"],
            ""
            if val is None
            else f", validation {cfg.monitor} {val[cfg.monitor]:.4f} "
            f"(best {run.best_metric:.4f} at epoch {run.best_epoch})",
        )
        if cfg.log_path is not None:
            path = Path(cfg.log_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    # -- checkpoints -----------------------------------------------------------------------------
    def _save_checkpoint(
        self,
        directory: Path,
        optimizer: torch.optim.Optimizer,
        rng: np.random.Generator,
        run: _RunState,
        improved: bool,
        n_batches: int,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        weights = {k: v.contiguous() for k, v in self.module.state_dict().items()}
        tensors, groups = _optimizer_tensors(optimizer)
        tmp = Path(tempfile.mkdtemp(prefix=".last.tmp-", dir=directory))
        save_file(weights, str(tmp / "module.safetensors"))
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        write_json_atomic(
            tmp / "state.json",
            {
                "epoch": run.epoch,
                "step": run.step,
                "best_epoch": run.best_epoch,
                "best_metric": run.best_metric if run.best_epoch is not None else None,
                "bad_validations": run.bad,
                "elapsed_seconds": run.elapsed,
                "n_batches": n_batches,
                "numpy_rng": rng.bit_generator.state,
                "param_groups": groups,
                "history": run.history,
            },
        )
        replace_dir(tmp, directory / "last")
        if improved:
            tmp = Path(tempfile.mkdtemp(prefix=".best.tmp-", dir=directory))
            save_file(weights, str(tmp / "module.safetensors"))
            write_json_atomic(tmp / "state.json", {"epoch": run.epoch, "metric": run.best_metric})
            replace_dir(tmp, directory / "best")

    def _load_checkpoint(
        self,
        directory: Path,
        optimizer: torch.optim.Optimizer,
        rng: np.random.Generator,
        n_batches: int,
    ) -> tuple[_RunState, dict[str, torch.Tensor] | None] | None:
        last = directory / "last"
        if not (last / "state.json").is_file():
            return None
        meta = json.loads((last / "state.json").read_text())
        if meta.get("n_batches") != n_batches:
            logger.warning(
                "checkpoint %s was written with %s batches per epoch, now %d: the data or the "
                "batch size changed, resuming anyway",
                last,
                meta.get("n_batches"),
                n_batches,
            )
        self.module.load_state_dict(load_file(str(last / "module.safetensors")))
        optimizer.load_state_dict(
            _optimizer_state(load_file(str(last / "optimizer.safetensors")), meta["param_groups"])
        )
        torch.set_rng_state(load_file(str(last / "rng.safetensors"))["torch"])
        rng.bit_generator.state = meta["numpy_rng"]
        best_state = None
        if (directory / "best" / "module.safetensors").is_file():
            best_state = load_file(str(directory / "best" / "module.safetensors"))
        run = _RunState(
            epoch=int(meta["epoch"]),
            step=int(meta["step"]),
            best_epoch=meta["best_epoch"],
            best_metric=-math.inf if meta["best_metric"] is None else float(meta["best_metric"]),
            bad=int(meta["bad_validations"]),
            elapsed=float(meta["elapsed_seconds"]),
            history=list(meta["history"]),
        )
        logger.info("resumed from %s at epoch %d (step %d)", last, run.epoch, run.step)
        return run, best_state


@dataclass
class _RunState:
    """Progress of a run (what a checkpoint restores)."""

    epoch: int = 0
    step: int = 0
    best_epoch: int | None = None
    best_metric: float = -math.inf
    bad: int = 0
    elapsed: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    last_summary: str = ""
