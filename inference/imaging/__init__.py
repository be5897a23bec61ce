"""Image utilities shared by the cogs and the engine: pure Pillow and numpy, no torch, no discord.

- :mod:`.decode`: uploads to RGB images and masks, with member-facing errors.
- :mod:`.pngmeta`: the Automatic1111 ``parameters`` text, written into and read from files.
- :mod:`.grid`: several results in one picture.
- :mod:`.masks`: named regions and boxes for /paint, feathering, pasting the original back.
- :mod:`.fit`: fitting Discord's upload limit; preview thumbnails.
"""

from __future__ import annotations

from inference.imaging.decode import (
    ImageInputError,
    decode_image,
    decode_mask,
    image_size_of,
    load_upload,
    sniff_format,
    to_rgb,
)
from inference.imaging.fit import fit_for_upload, thumbnail_png
from inference.imaging.grid import cell_box, grid_shape, make_grid
from inference.imaging.masks import (
    REGION_NAMES,
    box_mask,
    composite_unmasked,
    feather,
    mask_coverage,
    parse_box,
    parse_regions,
    region_mask,
)
from inference.imaging.pngmeta import (
    encode_png,
    format_parameters,
    parse_parameters,
    read_parameters,
    user_comment_exif,
)

__all__ = [
    "REGION_NAMES",
    "ImageInputError",
    "box_mask",
    "cell_box",
    "composite_unmasked",
    "decode_image",
    "decode_mask",
    "encode_png",
    "feather",
    "fit_for_upload",
    "format_parameters",
    "grid_shape",
    "image_size_of",
    "load_upload",
    "make_grid",
    "mask_coverage",
    "parse_box",
    "parse_parameters",
    "parse_regions",
    "read_parameters",
    "region_mask",
    "sniff_format",
    "thumbnail_png",
    "to_rgb",
    "user_comment_exif",
]
