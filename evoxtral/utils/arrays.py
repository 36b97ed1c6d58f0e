"""Array columns stored as `.npy` bytes: what the collator reads back at the speed of a memory copy.

`datasets` hands an `Array3D` column to Python as nested lists (a Python object per value: 1.9 million of them
for one row of encoder states at Voxtral-Mini-3B's shapes), and even its numpy formatting builds a variable-length
array through per-row conversions. A binary column holding each array as `.npy` bytes (numpy's own header: dtype,
shape, order) comes out of Arrow as one `bytes` object per row, and `np.frombuffer` turns it into an array without
touching the values: bench/input_pipeline.py measures the difference.

Disk: the raw values plus a 128-byte header, so one 30 s chunk of encoder states at the 3B's shapes
(1,500 x 1,280, float16) is 3.7 MiB, and log-mel features (128 x 3,000, float32) are 1.5 MiB.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from datasets import Value

NPY_MAGIC = b"\x93NUMPY"


def npy_bytes_feature() -> Value:
    """The `datasets` feature of a column of arrays stored with :func:`encode_array`."""
    return Value("binary")


def encode_array(array: np.ndarray) -> bytes:
    """One array as `.npy` bytes (C order), readable by :func:`decode_array` and by `np.load`."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_array(data: bytes) -> np.ndarray:
    """The array in `.npy` bytes, as a read-only view of them (no copy of the values)."""
    buffer = io.BytesIO(data)
    version = np.lib.format.read_magic(buffer)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(buffer)
    if fortran_order:
        raise ValueError("arrays are stored in C order; this one is in Fortran order")
    count = int(np.prod(shape, dtype=np.int64))
    return np.frombuffer(data, dtype=dtype, count=count, offset=buffer.tell()).reshape(shape)


def as_array(value: Any, dtype: np.dtype | str | None = None) -> np.ndarray:
    """A stored array cell as numpy: `.npy` bytes, a numpy array, or nested lists (older caches)."""
    if isinstance(value, (bytes, bytearray, memoryview)) and bytes(value[:6]) == NPY_MAGIC:
        array = decode_array(bytes(value))
        return array if dtype is None else array.astype(dtype, copy=False)
    return np.asarray(value, dtype=dtype)
