"""Data sources: each reader turns a source into `RawData`; `load_data` (vaekit.data.loading) is the one
way in, for data in memory and streamed alike. This module only hands names on."""

from vaekit.data.batch import Batch
from vaekit.data.codec import Codec, IdentityCodec, PixelCodec, StandardizeCodec, codec_from_dict
from vaekit.data.loading import READERS, detect_format, load_data, read_source
from vaekit.data.source import ARRAY, IMAGE, TABLE, RawData, Split, Splits, split_source

__all__ = [
    "ARRAY", "IMAGE", "TABLE", "Batch", "Codec", "IdentityCodec", "PixelCodec", "RawData", "READERS", "Split",
    "Splits", "StandardizeCodec", "codec_from_dict", "detect_format", "load_data", "read_source", "split_source",
]
