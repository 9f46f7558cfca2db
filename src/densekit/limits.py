"""The sizes a data file, an image or a checkpoint may claim, in one place (no imports: the
torch-free runtime reads it too).

Every reader compares what a header or a label claims with these before allocating, so a small
malformed or hostile file fails at once with a one-line error instead of building a class list or
an array until memory runs out. Each is far above any real dataset densekit reads (docs/data.md,
"Malformed and hostile files").
"""

MAX_CLASSES = 100_000
"""Class count a label file or a label may imply (ImageNet-21k has 21,841 classes)."""

MAX_IMAGE_PIXELS = 25_000_000
"""Pixels (width x height) of one image when decoding starts: a 24-megapixel photo passes; JPEGs
larger than this are first reduced by libjpeg's 1/2..1/8 draft scaling when a target size is known.
Per call, unlike Pillow's process-wide ``Image.MAX_IMAGE_PIXELS``, which densekit leaves alone."""

MAX_IMAGE_FILE_BYTES = 256 << 20
"""Bytes of one encoded image file; it is read whole, then decoded from memory (where a chunk
length that lies costs nothing, while a file object would allocate it first)."""

MAX_ARRAY_BYTES = 4 << 30
"""Bytes an IDX header may claim for its array, or a generated (synthetic) set may hold
(Fashion-MNIST's training images are 47 MB, EMNIST ByClass's 638 MB)."""

MAX_PICKLE_BYTES = 1 << 30
"""Bytes of one data pickle, decompressed (a CIFAR-100 batch is 155 MB, Nielsen's MNIST 220 MB)."""

MAX_RECORD_BYTES = 256 << 20
"""Bytes of one TFRecord record (one encoded image with its features)."""


def read_at_most(f, n: int, chunk: int = 1 << 20) -> bytes:
    """Up to ``n`` bytes of ``f``, read a chunk at a time.

    ``f.read(n)`` on a buffered or gzip file allocates ``n`` bytes before reading any, so a claimed
    size alone would cost that much memory; this costs only what the file really holds."""
    parts, left = [], n
    while left > 0:
        part = f.read(min(chunk, left))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)

MAX_TABLE_ROWS = 20_000_000
"""Rows of one CSV table (ImageNet-21k has 14 million images; ChestX-ray14's table 112,120 rows).
Tables are streamed a line at a time, so this bounds the paths and labels kept, not the file read."""

MAX_TABLE_LINE_BYTES = 1 << 20
"""Bytes of one line of a CSV table: a file with no line breaks is refused after this much,
instead of being read whole as one line."""
