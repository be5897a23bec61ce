"""The adapters an admin adds to a model: ``[[model.loras]]`` (with their recipes), ``[model.ip_adapter]``
and ``[[model.embeddings]]``. Plain values; their checks live in config_checks.py,
config_ip_adapter.py and config_embeddings.py."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoraRecipe:
    """The settings a LoRA was made for (a speed LoRA wants its own steps and sampler).

    Unset values (0, -1, "") leave the model's defaults alone. They are defaults only: what a member
    sets explicitly wins (inference/validation.py)."""

    steps: int = 0
    guidance: float = -1.0
    scheduler: str = ""
    spacing: str = ""  # "" = the sampler's own timestep spacing
    eta: float = -1.0  # TCD's gamma (stochasticity); -1 = the sampler's default

    def over(self, other: LoraRecipe) -> LoraRecipe:
        """This recipe's values, falling back to ``other``'s where this one leaves them unset."""
        return LoraRecipe(
            steps=self.steps or other.steps,
            guidance=self.guidance if self.guidance >= 0 else other.guidance,
            scheduler=self.scheduler or other.scheduler,
            spacing=self.spacing or other.spacing,
            eta=self.eta if self.eta >= 0 else other.eta,
        )


@dataclass(frozen=True)
class LoraConfig:
    """One ``[[model.loras]]`` entry.

    ``source`` is a LoRA file, a folder holding LoRA files, or a hub repo; ``weight_name`` picks one
    file of a folder or repo that holds several (Hyper-SD ships a dozen in one repo). ``fuse`` merges
    the LoRA into the model's weights at load time at ``weight``: always on, never offered to members,
    and no per-request LoRA switching can undo it."""

    name: str
    source: str
    weight: float = 0.8
    weight_name: str = ""
    fuse: bool = False
    recipe: LoraRecipe = field(default_factory=LoraRecipe)


@dataclass(frozen=True)
class IpAdapterConfig:
    """A model's ``[model.ip_adapter]``: the IP-Adapter behind /imagine's ``style_ref`` (config_ip_adapter.py
    checks it, inference/style_ref.py loads it). ``source`` "" = none."""

    source: str = ""  # a hub repo ("h94/IP-Adapter"), a local folder, or one .safetensors/.bin file
    subfolder: str = ""  # of a repo or folder: where weight_name lies ("models")
    weight_name: str = ""  # "ip-adapter_sd15.safetensors"
    image_encoder: str = ""  # a CLIPVisionModelWithProjection folder or hub id; "" = the repo's image_encoder folder
    strength: float = 0.6  # the default style_ref_strength


@dataclass(frozen=True)
class EmbeddingConfig:
    """One ``[[model.embeddings]]`` entry: a textual inversion (EasyNegative and the like).

    ``source`` is an embedding file (``.safetensors``, ``.pt``, ``.bin``), a folder holding one
    (``weight_name`` picks a file of a folder or hub repo holding several), or a hub repo; members
    write ``token`` (default: ``name``) in a prompt or negative prompt to use it."""

    name: str
    source: str
    weight_name: str = ""
    token: str = ""

    @property
    def word(self) -> str:
        """What members type to use it."""
        return self.token or self.name
