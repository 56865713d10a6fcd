"""Extracts the 8x8 handwritten-digits set (1,797 images, 10 classes) from scikit-learn's copy
into two gzip-compressed IDX files, the format MNIST ships in, so `bnorm` reads it with the same
reader as MNIST. Run once: python extract.py (needs scikit-learn)."""
import gzip
import struct

import numpy as np
from sklearn.datasets import load_digits

d = load_digits()
images = d.images.astype(np.uint8)  # [1797, 8, 8], 0..16
labels = d.target.astype(np.uint8)
assert images.max() <= 16 and images.shape == (1797, 8, 8)


def write(path, array, dims):
    header = struct.pack(">BBBB", 0, 0, 0x08, len(dims)) + b"".join(struct.pack(">I", n) for n in dims)
    # mtime=0: the same bytes on every run.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(header + array.tobytes())


write("digits-images-idx3-ubyte.gz", images, images.shape)
write("digits-labels-idx1-ubyte.gz", labels, labels.shape)
print("wrote", images.shape, labels.shape)
