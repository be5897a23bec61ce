"""/describe: an image-captioning model (transformers: BLIP or Florence-2) turns an image into prompt
suggestions. ``source`` finds (and, off the inference thread, downloads) the weights; ``captioner``
loads them and writes the suggestions; ``runner`` runs describe jobs on the inference thread."""

from inference.describe.source import CaptionSource, DescribeUnavailable

__all__ = ["CaptionSource", "DescribeUnavailable"]
