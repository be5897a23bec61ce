"""Skip diffusers' per-call bookkeeping whose answer cannot change for a loaded model.

Three things a plain ``pipe(...)`` call recomputes every time; on the tiny test model at 64 px they
are ~8% of a call (bench/engine.py, ``call_trims``):

* Every ``Attention.forward`` runs ``inspect.signature(self.processor.__call__)`` to filter its
  keyword arguments: ~20 us per attention layer call, pure Python under the GIL (a full-size
  SD 1.5 UNet has 32 such layers: ~0.6-0.8 ms per step). ``inspect`` builds a fresh signature for
  every *bound* method, even when the function carries a precomputed ``__signature__`` (that
  still cost ~6 us); a call object whose class carries the bound signature costs ~2 us.
* ``pipeline._execution_device`` walks every module of every component looking for offload
  hooks (twice), once per call: 1-2 ms on the tiny model, 4.6 ms on a full-size SD 1.5, while
  the GPU has nothing queued yet.
* ``maybe_convert_prompt`` (textual inversion) tokenizes every prompt in Python, to find tokens
  of a *multi-vector* embedding; it only ever changes a prompt when the tokenizer holds such a
  token (``<tok>`` with ``<tok>_1``), which the bot never loads.

The answers are fixed once the pipeline is placed (moved, offloaded or compiled), so they are
worked out once here and kept on the *instances* the bot owns: each attention processor gets a
subclass whose ``__call__`` binds to an object that already carries the bound signature
(``inspect.signature`` returns it at once), and each pipeline a subclass whose
``_execution_device`` is the value it had when trimmed and whose ``maybe_convert_prompt`` returns
the prompts as they are while no multi-vector token is loaded (checked on every call, so loading
one later still works). Class names stay the same (``from_pipe`` looks pipelines up by class name)
and ``isinstance`` checks still hold. Behaviour is unchanged: the same keyword filtering and
warning, the same device, the same prompts, the same pixels. Pipelines and processors nobody
trimmed are not touched. A module wrapped by ``torch.compile`` keeps diffusers' processors: its
compiled graph has no per-call Python left to trim, and dynamo cannot trace the bound-signature
objects (it would split the graph around every attention layer).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

_TRIMMED = "_easel_trimmed"
_memo_classes: dict[type, type] = {}


def trim_call_overhead(pipe: Any) -> None:
    """Apply the trims to ``pipe`` (idempotent). Call after the pipeline is placed on its device."""
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if hasattr(module, "_orig_mod"):
            continue  # torch.compile'd: dynamo traces the lookups once, and a trimmed processor breaks its graph
        processors = getattr(module, "attn_processors", None)
        for processor in (processors or {}).values():
            _memoize_signature(processor)
    _trim_pipeline(pipe)


def is_trimmed(obj: Any) -> bool:
    """Whether ``obj`` (a pipeline or an attention processor) went through :func:`trim_call_overhead`."""
    return bool(getattr(type(obj), _TRIMMED, False))


class _SignedMethod:
    """A trimmed processor class's ``__call__``: binds like a method, to a ``functools.partial``
    whose class carries the bound signature (checked by ``inspect`` before anything else).
    Binding happens on each access, so a copied processor binds to itself."""

    def __init__(self, func: Any) -> None:
        self.__func__ = func
        signature = inspect.signature(func)
        bound = signature.replace(parameters=tuple(signature.parameters.values())[1:])
        self._bind = type("SignedCall", (functools.partial,), {"__signature__": bound})

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self.__func__ if instance is None else self._bind(self.__func__, instance)


def _memoize_signature(processor: Any) -> None:
    cls = type(processor)
    if getattr(cls, _TRIMMED, False):
        return
    call = cls.__call__
    if not inspect.isfunction(call):
        return  # not a plain Python method: leave it as diffusers made it
    processor.__class__ = _memo_class(cls, {"__call__": _SignedMethod(call)})


def _trim_pipeline(pipe: Any) -> None:
    cls = type(pipe)
    device = pipe._execution_device
    if not getattr(cls, _TRIMMED, False):
        members: dict[str, Any] = {"_execution_device": property(lambda self: self._easel_execution_device,
                                                                 doc="The execution device, fixed when trimmed.")}
        if callable(getattr(cls, "maybe_convert_prompt", None)):
            members["maybe_convert_prompt"] = _prompt_converter(cls.maybe_convert_prompt)
        pipe.__class__ = _memo_class(cls, members)
    # DiffusionPipeline.__setattr__ only rewrites its config for registered components.
    pipe._easel_execution_device = device


def _prompt_converter(convert: Any) -> Any:
    @functools.wraps(convert)
    def maybe_convert_prompt(self: Any, prompt: Any, tokenizer: Any) -> Any:
        if _has_multi_vector_token(tokenizer):
            return convert(self, prompt, tokenizer)
        return list(prompt) if isinstance(prompt, list) else prompt

    return maybe_convert_prompt


def _has_multi_vector_token(tokenizer: Any) -> bool:
    """Whether a textual inversion of several vectors is loaded (``<tok>`` next to ``<tok>_1``):
    the only case in which diffusers' ``maybe_convert_prompt`` changes a prompt."""
    added = tokenizer.added_tokens_encoder
    return any(f"{token}_1" in added for token in added)


def _memo_class(cls: type, members: dict[str, Any]) -> type:
    """One subclass per original class, named like it (diffusers maps pipelines by class name)."""
    memo = _memo_classes.get(cls)
    if memo is None:
        memo = type(cls.__name__, (cls,), {**members, _TRIMMED: True, "__module__": cls.__module__,
                                           "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})
        _memo_classes[cls] = memo
    return memo
