"""Several models on one accelerator without thrashing: which loaded models the executor keeps.

With ``device.resident_models = N`` (N ≥ 2) up to N models stay loaded: the one in use on the
accelerator, the others *parked* in CPU RAM (page-locked on CUDA, so copying them back runs at the
bus's full speed). Switching to a parked model costs one host-to-device copy of its weights instead
of reading it from disk and building its pipelines again; when a model that is not loaded is asked
for, the least recently used one is dropped to make room. ``0`` (the default) keeps the rule easel
always had: one model on an accelerator (two SDXLs do not fit most GPUs), all of them on a CPU host
(``device.device = "cpu"``), where RAM is the device and parking moves nothing.

With ``device.cpu_offload`` the weights live in CPU RAM between uses anyway (diffusers' hooks move
each module in when it runs): a parked model is simply kept, nothing is moved.

Runs on the inference thread only (it is torch work), from :class:`inference.executor.GpuExecutor`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch

from inference.devices import free_memory
from inference.loader import LoadedModel

log = logging.getLogger(__name__)

CPU = torch.device("cpu")


def modules_of(model: LoadedModel) -> list[torch.nn.Module]:
    """Every distinct module of every pipeline the model holds (derived pipelines share most), and
    those it keeps beside them: a depth estimator, an IP-Adapter's layers while out of the UNet."""
    seen: dict[int, torch.nn.Module] = {}
    values: list[Any] = [v for pipe in model.all_pipes() for v in getattr(pipe, "components", {}).values()]
    values += [getattr(c.estimator, "model", None) for c in model.controls.values()]
    adapter = model.style_adapter
    if adapter is not None:
        values += [adapter.projection, *adapter.processors.values()]
    for value in values:
        if isinstance(value, torch.nn.Module):
            seen.setdefault(id(value), value)
    return list(seen.values())


def weight_bytes(model: LoadedModel) -> int:
    """Bytes of the model's parameters and buffers (what a switch copies)."""
    return sum(t.numel() * t.element_size() for m in modules_of(model)
               for t in (*m.parameters(), *m.buffers()))


def move(model: LoadedModel, device: torch.device) -> None:
    """Move all of ``model``'s modules to ``device``. Parked on the CPU next to a CUDA device, the
    tensors are page-locked so the copy back is asynchronous and at full bus speed."""
    pin = device.type == "cpu" and model.device.type == "cuda"
    for module in modules_of(model):
        module.to(device, non_blocking=model.device.type == "cuda")
        if pin:
            _pin(module)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def _pin(module: torch.nn.Module) -> None:
    for param in module.parameters():
        if type(param.data) is not torch.Tensor:  # a quantised weight (device.quantize): torchao's own
            continue  # tensor type, which need not support page-locking; it is copied back without it
        if not param.data.is_pinned():
            param.data = param.data.pin_memory()
    for sub in module.modules():
        for name, buf in sub._buffers.items():
            if buf is not None and not buf.is_pinned():
                sub._buffers[name] = buf.pin_memory()


class Residency:
    """The executor's loaded models, most recently used last, and which one is on the accelerator."""

    def __init__(self, limit: int, *, accelerator: bool, offload: bool) -> None:
        if limit < 0:
            raise ValueError("resident_models must be 0 (automatic) or more")
        self.limit = limit if limit else (1 if accelerator else 0)  # 0: no limit
        self.offload = offload
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._active: str | None = None
        self.switches: list[tuple[str, str, float]] = []  # (model, "ram"|"disk", seconds), newest last

    def __iter__(self) -> Iterator[LoadedModel]:
        """Active model first, then the parked ones, most recently used first. Read on the event loop
        (/easel status, /metrics) while the GPU thread may switch: one snapshot, taken in one C call."""
        held = list(self._models.items())
        active = self._active
        ordered = [m for name, m in held if name == active] + [m for name, m in reversed(held) if name != active]
        return iter(ordered)

    def __len__(self) -> int:
        return len(self._models)

    def get(self, name: str) -> LoadedModel | None:
        return self._models.get(name)

    @property
    def active(self) -> LoadedModel | None:
        return self._models.get(self._active) if self._active is not None else None

    def is_parked(self, name: str) -> bool:
        return name in self._models and name != self._active and self._moves(self._models[name])

    def use(self, name: str, load: Callable[[], LoadedModel]) -> LoadedModel:
        """The model ``name`` on its device: as it is when active, moved in from RAM when parked,
        else loaded by ``load()`` (after making room)."""
        model = self._models.get(name)
        if model is not None and name == self._active:
            self._models.move_to_end(name)
            return model
        started = time.perf_counter()
        if model is not None:
            self._park_active()
            if self._moves(model):
                move(model, model.device)
            how = "ram"
        else:
            self._make_room()
            model = load()
            self._models[name] = model
            how = "disk"
        self._models.move_to_end(name)
        self._active = name
        seconds = time.perf_counter() - started
        self.switches = [*self.switches[-19:], (name, how, seconds)]
        if how == "ram":
            log.info("model %s back on %s from RAM in %.2f s", name, model.device, seconds)
        return model

    def drop_all(self) -> None:
        for name in list(self._models):
            self._drop(name)

    # ------------------------------------------------------------------ internals

    def _moves(self, model: LoadedModel) -> bool:
        """Whether parking ``model`` moves it (not on a CPU device, nor under CPU offload)."""
        return model.device.type != "cpu" and not self.offload

    def _park_active(self) -> None:
        active = self.active
        if active is None:
            return
        self._active = None
        if self.limit == 1:  # nothing may stay besides the model in use
            self._drop(active.name)
        elif self._moves(active):
            started = time.perf_counter()
            move(active, CPU)
            free_memory(active.device)
            log.info("model %s parked in RAM in %.2f s", active.name, time.perf_counter() - started)

    def _make_room(self) -> None:
        """Before a load: park the active model, and drop least recently used ones until one more fits."""
        self._park_active()
        while self.limit and len(self._models) >= self.limit:
            self._drop(next(iter(self._models)))

    def _drop(self, name: str) -> None:
        model = self._models.pop(name)
        if self._active == name:
            self._active = None
        log.info("model %s unloaded", name)
        free_memory(model.device)

