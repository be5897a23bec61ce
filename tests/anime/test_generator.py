"""The generator written here has exactly the published checkpoints' layout and keeps image sizes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from inference.anime import Generator
from inference.anime.generator import ConvNormLReLU, InvertedResBlock

TSV = Path(__file__).resolve().parents[1] / "data" / "animegan2_state_dict.tsv"


def published_layout() -> list[tuple[str, tuple[int, ...]]]:
    """``key<TAB>shape`` rows (shape like ``32x3x7x7``) of the real checkpoints, in file order."""
    rows = []
    for line in TSV.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        rows.append((key, tuple(int(n) for n in shape.split("x"))))
    return rows


def test_state_dict_matches_the_published_checkpoint_key_by_key_and_shape_by_shape() -> None:
    expected = published_layout()
    actual = [(key, tuple(t.shape)) for key, t in Generator().state_dict().items()]
    assert len(expected) == 77
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        assert got == want, f"entry {index}: expected {want}, generator has {got}"
    assert actual == expected


def test_parameter_count_is_that_of_the_published_generator() -> None:
    published = sum(math.prod(shape) for _, shape in published_layout())
    assert published == 2_143_552
    assert sum(p.numel() for p in Generator().parameters()) == published


def test_conv_norm_lrelu_keeps_four_slots_with_weightless_padding_and_activation() -> None:
    block = ConvNormLReLU(3, 8, kernel_size=7, padding=3)
    assert isinstance(block, nn.Sequential) and len(block) == 4
    assert isinstance(block[0], nn.ReflectionPad2d)
    assert isinstance(block[1], nn.Conv2d) and block[1].bias is None and block[1].padding == (0, 0)
    assert isinstance(block[2], nn.GroupNorm) and block[2].num_groups == 1
    assert isinstance(block[3], nn.LeakyReLU) and block[3].negative_slope == pytest.approx(0.2)


def test_inverted_residual_block_adds_its_input_only_when_channels_agree() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 16, 8, 8)
    same = InvertedResBlock(16, 16).eval()
    nn.init.zeros_(same.layers[3].weight)
    nn.init.zeros_(same.layers[3].bias)  # the branch now outputs zeros: only the skip connection is left
    with torch.no_grad():
        assert torch.equal(same(x), x)
        widening = InvertedResBlock(16, 32).eval()
        assert widening(x).shape == (1, 32, 8, 8)


def test_saved_state_dict_loads_back_strictly_and_reproduces_the_output(tmp_path: Path) -> None:
    torch.manual_seed(7)
    original = Generator().eval()
    path = tmp_path / "g.pt"
    torch.save(original.state_dict(), path)
    copy = Generator().eval()
    copy.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    x = torch.rand(1, 3, 32, 48) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(original(x), copy(x))


@pytest.mark.parametrize(("height", "width"), [(512, 512), (68, 100)], ids=["512-square", "non-square"])
def test_output_has_the_input_size_and_stays_in_minus_one_to_one(height: int, width: int) -> None:
    torch.manual_seed(0)
    model = Generator().eval()
    with torch.inference_mode():
        out = model(torch.rand(1, 3, height, width) * 2 - 1)
    assert out.shape == (1, 3, height, width)
    assert out.min() >= -1 and out.max() <= 1
