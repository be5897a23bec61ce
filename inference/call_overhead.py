"""Skip diffusers' per-call bookkeeping whose answer cannot change for a loaded model.

Two things a plain ``pipe(...)`` call recomputes every time; on the tiny test model at 64 px they
are 4-10% of a call (bench/engine.py, ``call_trims``):

* Every ``Attention.forward`` runs ``inspect.signature(self.processor.__call__)`` to filter its
  keyword arguments: ~20 us per attention layer call, pure Python under the GIL (a full-size
  SD 1.5 UNet has 32 such layers: ~0.6 ms per step).
* ``pipeline._execution_device`` walks every module of every component looking for offload
  hooks (twice), once per call: 1-2 ms on the tiny model, 4.6 ms on a full-size SD 1.5, while
  the GPU has nothing queued yet.

Both answers are fixed once the pipeline is placed (moved, offloaded or compiled), so they are
worked out once here and kept on the *instances* the bot owns: each attention processor gets a
subclass whose ``__call__`` carries its precomputed ``__signature__`` (``inspect.signature``
returns that at once), and each pipeline a subclass whose ``_execution_device`` is the value it
had when trimmed. Class names stay the same (``from_pipe`` looks pipelines up by class name) and
``isinstance`` checks still hold. Behaviour is unchanged: the same keyword filtering and warning,
the same device, the same pixels. Pipelines and processors nobody trimmed are not touched.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

_TRIMMED = "_easel_trimmed"
_memo_classes: dict[type, type] = {}


def trim_call_overhead(pipe: Any) -> None:
    """Apply both trims to ``pipe`` (idempotent). Call after the pipeline is placed on its device."""
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        processors = getattr(module, "attn_processors", None)
        for processor in (processors or {}).values():
            _memoize_signature(processor)
    _pin_execution_device(pipe)


def is_trimmed(obj: Any) -> bool:
    """Whether ``obj`` (a pipeline or an attention processor) went through :func:`trim_call_overhead`."""
    return bool(getattr(type(obj), _TRIMMED, False))


def _memoize_signature(processor: Any) -> None:
    cls = type(processor)
    if getattr(cls, _TRIMMED, False):
        return
    call = cls.__call__
    if not inspect.isfunction(call):
        return  # not a plain Python method: leave it as diffusers made it
    processor.__class__ = _memo_class(cls, "__call__", _call_with_signature(call))


def _call_with_signature(call: Any) -> Any:
    @functools.wraps(call)
    def memoized(self: Any, *args: Any, **kwargs: Any) -> Any:
        return call(self, *args, **kwargs)

    memoized.__signature__ = inspect.signature(call)  # type: ignore[attr-defined]
    return memoized


def _pin_execution_device(pipe: Any) -> None:
    cls = type(pipe)
    device = pipe._execution_device
    if not getattr(cls, _TRIMMED, False):
        pipe.__class__ = _memo_class(cls, "_execution_device", property(lambda self: self._easel_execution_device,
                                                         doc="The execution device, fixed when trimmed."))
    # DiffusionPipeline.__setattr__ only rewrites its config for registered components.
    pipe._easel_execution_device = device


def _memo_class(cls: type, attribute: str, member: Any) -> type:
    """One subclass per original class, named like it (diffusers maps pipelines by class name)."""
    memo = _memo_classes.get(cls)
    if memo is None:
        memo = type(cls.__name__, (cls,), {attribute: member, _TRIMMED: True, "__module__": cls.__module__,
                                           "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})
        _memo_classes[cls] = memo
    return memo
