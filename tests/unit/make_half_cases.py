"""Reference FP16/BF16 conversions from NumPy (float16) and ml_dtypes (bfloat16), for Otter's
conversion tests: `python3 make_half_cases.py OUT.npz`. Writes float32 inputs covering normals,
subnormals of both formats, values near the rounding ties, the overflow boundary, infinities and
NaNs, with the bit patterns NumPy/ml_dtypes produce, and all 65536 half and bfloat16 patterns
widened back to float32."""
import sys

import ml_dtypes
import numpy as np

rng = np.random.default_rng(0)
bits = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
special = np.array([0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 1e6, -1e6, 2.0**-24, 2.0**-25,
                    2.0**-25 * 1.0000001, 3 * 2.0**-26, 2.0**-14, 2.0**-14 * (1 - 2.0**-11), 6e-8, 1e-8,
                    1 + 2.0**-11, 1 + 3 * 2.0**-11, 3.3895314e38, np.inf, -np.inf, np.nan], dtype=np.float32)
# Values near half-precision rounding boundaries: exact ties and one ulp either side.
halves = np.arange(0, 0x7C00, 37, dtype=np.uint16).view(np.float16).astype(np.float32)
nxt = np.nextafter(halves, np.float32(np.inf))
mid = ((halves.astype(np.float64) + nxt.astype(np.float64) * 0) ).astype(np.float32)
f16_next = (np.arange(0, 0x7C00, 37, dtype=np.uint16) + 1).view(np.float16).astype(np.float32)
ties = ((halves.astype(np.float64) + f16_next.astype(np.float64)) / 2).astype(np.float32)
near = np.concatenate([ties, np.nextafter(ties, np.float32(0)), np.nextafter(ties, np.float32(np.inf))])
f32 = np.concatenate([bits.view(np.float32), special, near, -near, nxt])
with np.errstate(over="ignore", invalid="ignore"):
    f16 = f32.astype(np.float16).view(np.uint16).astype(np.int32)
    bf16 = f32.astype(ml_dtypes.bfloat16).view(np.uint16).astype(np.int32)
all16 = np.arange(65536, dtype=np.uint32).astype(np.uint16)
np.savez(sys.argv[1], f32=f32, f16_bits=f16, bf16_bits=bf16,
         half_to_f32=all16.view(np.float16).astype(np.float32),
         bf16_to_f32=all16.view(ml_dtypes.bfloat16).astype(np.float32),
         all16=all16.astype(np.int32))
print(f"wrote {len(f32)} conversion cases to {sys.argv[1]}")
