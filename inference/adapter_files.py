"""Where a model's add-on weights come from (a LoRA, a textual inversion embedding): the one file a
folder's ``weight_name`` picks, or why a hub repo did not answer, each as one line an admin can act on.

``label`` names the add-on in those lines (``LoRA 'pixel'``, ``embedding 'EasyNegative'``).
"""

from __future__ import annotations

from pathlib import Path

from inference.loader import ModelLoadError, first_line, hub_reachable


def one_file(label: str, kind: str, path: Path, weight_name: str, suffixes: tuple[str, ...], none_held: str) -> Path:
    """The one ``kind`` file (``LoRA``, ``embedding``) that ``path`` and ``weight_name`` point at.
    ``none_held``: how to say a folder holds no such file (e.g. "no .safetensors file")."""
    if not path.exists():
        raise ModelLoadError(f"{label}: {path} does not exist")
    if path.is_file():
        return path
    files = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix in suffixes)
    if weight_name:
        if not (path / weight_name).is_file():
            held = ", ".join(files) or f"no {kind} files"
            raise ModelLoadError(f"{label}: weight_name {weight_name!r} is not in {path} (it holds: {held})")
        return path / weight_name
    if len(files) != 1:
        held = f"several {kind} files ({', '.join(files)})" if files else none_held
        raise ModelLoadError(f"{label}: the folder {path} holds {held}; set weight_name to the one to use")
    return path / files[0]


def hub_failure(label: str, source: str, weight_name: str, folder: str, exc: OSError) -> ModelLoadError:
    """One line for weights from a hub repo that did not come: offline, no hub, or a wrong repo or
    file name. ``folder``: where the admin is told to download them (``./loras``)."""
    from huggingface_hub import constants

    what = f"{source} ({weight_name})" if weight_name else source
    fetch = f"hf download {source}{' ' + weight_name if weight_name else ''} --local-dir {folder}"
    if constants.is_offline_mode():
        return ModelLoadError(f"{label}: {what} is not in the Hugging Face cache and HF_HUB_OFFLINE is set, so it "
                              f"cannot be downloaded. Unset HF_HUB_OFFLINE, or download it ({fetch}) and set its "
                              "source to that file")
    if not hub_reachable():
        return ModelLoadError(f"{label}: the Hugging Face hub ({constants.ENDPOINT}) cannot be reached to download "
                              f"{what}. Download it where there is internet ({fetch}) and set its source to that file")
    return ModelLoadError(f"{label} could not be downloaded from {what}: are the repo and "
                          f"weight_name right? {first_line(exc)}")
