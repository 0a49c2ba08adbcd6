#!/usr/bin/env python3
"""Write VGG-16's convolution weights in torchvision's layout with random values.

The file has torchvision's keys and shapes (`features.N.weight` [out, in, 3, 3] and
`features.N.bias` [out] for N = 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28) as float32
safetensors, so that `allday baseline --model vgg16 --weights FILE` can be run without the
ImageNet file. The values are He-normal draws, so activations keep their scale through the 13
layers; retrieval figures with them mean nothing. Only the standard library is needed.

    python3 scripts/random-vgg16-safetensors.py OUT.safetensors [SEED]
"""

import array
import json
import math
import random
import struct
import sys

INDICES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
CHANNELS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    out = sys.argv[1]
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) == 3 else 0)
    tensors = []
    channels_in = 3
    for index, channels_out in zip(INDICES, CHANNELS):
        std = math.sqrt(2.0 / (channels_in * 9))
        count = channels_out * channels_in * 9
        weight = array.array("f", (rng.gauss(0.0, std) for _ in range(count)))
        bias = array.array("f", [0.0] * channels_out)
        tensors.append((f"features.{index}.weight", [channels_out, channels_in, 3, 3], weight))
        tensors.append((f"features.{index}.bias", [channels_out], bias))
        channels_in = channels_out
    header = {}
    offset = 0
    for name, shape, values in tensors:
        size = len(values) * 4
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    if sys.byteorder != "little":
        for _, _, values in tensors:
            values.byteswap()
    with open(out, "wb") as file:
        file.write(struct.pack("<Q", len(text)))
        file.write(text)
        for _, _, values in tensors:
            values.tofile(file)


if __name__ == "__main__":
    main()
