"""Regenerates the golden numbers used in tests/drift_golden.rs.

Run: python3 drift_golden.py   (needs numpy + scipy; not a build or test dependency)

Conventions mirrored from custos-stats:
  * PSI = sum((c - r) * ln(c / r)) after replacing zero shares by 1e-4 (Evidently).
  * Jensen-Shannon distance = scipy.spatial.distance.jensenshannon(r, c, base=2).
  * Numeric bins: edges at the reference's inclusive quantiles 0.1..0.9
    (smallest sample whose inclusive rank >= q), deduplicated, bins right-closed.
"""
import math

import numpy as np

from generator import XorShift, normals  # noqa: F401  (shared with the other golden script)
from scipy.spatial.distance import jensenshannon
from scipy.stats import norm

EPS = 1e-4


def psi(r, c):
    r = np.where(np.asarray(r, float) == 0, EPS, r)
    c = np.where(np.asarray(c, float) == 0, EPS, c)
    return float(np.sum((c - r) * np.log(c / r)))


def js(r, c):
    return float(jensenshannon(r, c, base=2))




def inclusive_quantile(sorted_x, q):
    n = len(sorted_x)
    idx = max(math.ceil(q * n) - 1, 0)
    return sorted_x[idx]


def binned_shares(x, edges):
    counts = np.searchsorted(np.sort(x), edges, side="right")
    cdf = np.append(counts, len(x)) / len(x)
    return np.diff(np.insert(cdf, 0, 0.0))


print("hand-made vectors")
cases = {
    "uniform_vs_skewed": ([0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]),
    "zero_share": ([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]),
    "disjoint": ([1.0, 0.0], [0.0, 1.0]),
}
for name, (r, c) in cases.items():
    print(f"  {name}: psi={psi(r, c)!r} js={js(r, c)!r}")

print("normal(0,1) vs normal(1,1), 20000 each, deciles")
ref = normals(0x9E3779B97F4A7C15, 20000, 0.0)
cur = normals(0xD1B54A32D192ED03, 20000, 1.0)
rs = np.sort(ref)
edges = np.unique([inclusive_quantile(rs, q / 10) for q in range(1, 10)])
r_sh = binned_shares(ref, edges)
c_sh = binned_shares(cur, edges)
print(f"  first samples ref={ref[:3].tolist()} cur={cur[:3].tolist()}")
print(f"  sample psi={psi(r_sh, c_sh)!r} js={js(r_sh, c_sh)!r}")
z = norm.ppf(np.arange(1, 10) / 10)
pr = np.diff(np.concatenate([[0.0], norm.cdf(z), [1.0]]))
pc = np.diff(np.concatenate([[0.0], norm.cdf(z - 1.0), [1.0]]))
print(f"  population psi={psi(pr, pc)!r} js={js(pr, pc)!r}")

print("constant reference 5.0 vs half 5.0 / half 6.0 (bins <= 5, > 5)")
print(f"  psi={psi([1.0, 0.0], [0.5, 0.5])!r} js={js([1.0, 0.0], [0.5, 0.5])!r}")

print("categorical ref a:50 b:30 c:20, cur a:20 b:30 c:30 d:20")
r = [0.5, 0.3, 0.2, 0.0]
c = [0.2, 0.3, 0.3, 0.2]
print(f"  psi={psi(r, c)!r} js={js(r, c)!r}")
