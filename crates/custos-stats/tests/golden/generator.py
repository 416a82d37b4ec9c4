"""The deterministic generator of tests/common/mod.rs, bit for bit (up to libm rounding), shared by
the golden scripts so that their numbers refer to the very samples the Rust tests draw."""

import math

import numpy as np

MASK = (1 << 64) - 1


class XorShift:
    def __init__(self, seed):
        self.s = seed

    def next_u64(self):
        x = self.s
        x ^= (x << 13) & MASK
        x ^= x >> 7
        x ^= (x << 17) & MASK
        self.s = x
        return x

    def next_f64(self):
        return (self.next_u64() >> 11) / float(1 << 53)


def normals(seed, n, shift):
    g = XorShift(seed)
    out = []
    while len(out) < n:
        u1 = 1.0 - g.next_f64()
        u2 = g.next_f64()
        r = math.sqrt(-2.0 * math.log(u1))
        out.append(r * math.cos(2.0 * math.pi * u2) + shift)
        out.append(r * math.sin(2.0 * math.pi * u2) + shift)
    return np.array(out[:n])
