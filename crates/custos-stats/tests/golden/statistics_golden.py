"""Regenerates the golden numbers used in tests/statistics.rs.

Run: python3 statistics_golden.py   (needs numpy + scipy; not a build or test dependency)

Conventions mirrored from custos-stats `statistics.rs`:
  * KS p-value: Numerical Recipes probks, Q(lambda) with
    lambda = (sqrt(ne) + 0.12 + 0.11/sqrt(ne)) * D, ne = n1*n2/(n1+n2); Q = scipy kstwobign.sf.
    scipy.stats.ks_2samp(method='asymp') instead uses kstwo.sf(D, round(ne)); both printed.
  * Chi-square: scipy.stats.chi2_contingency(table, correction=False) after pooling categories
    whose expected count is < 5 in either row (pool merged into the smallest kept category if
    the pool itself still expects < 5).
  * z-test: pooled two-proportion z = (pc - pr)/sqrt(p(1-p)(1/nr + 1/nc)), p = 2*norm.sf(|z|)
    (statsmodels proportions_ztest([xc, xr], [nc, nr]) by hand).
  * Hellinger = sqrt(0.5 * sum((sqrt r - sqrt c)^2)) on renormalized shares.
  * KL(current || reference) = sum(rel_entr(c, r)) after zero shares -> 1e-4, no renormalization.
  * Wasserstein normed = scipy.stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001).
"""
import math

import numpy as np

from generator import XorShift, normals  # noqa: F401  (shared with the other golden script)
from scipy.special import rel_entr
from scipy.stats import chi2_contingency, kstwobign, ks_2samp, norm, wasserstein_distance





REF_SEED = 0x9E3779B97F4A7C15
CUR_SEED = 0xD1B54A32D192ED03
EPS = 1e-4


def nr_p(d, n1, n2):
    ne = n1 * n2 / (n1 + n2)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    return float(kstwobign.sf(lam))


print("kolmogorov_sf = kstwobign.sf")
for lam in [0.05, 0.3, 0.8, 1.0, 1.17, 1.19, 1.36, 2.0, 3.0, 6.0]:
    print(f"  ({lam!r}, {float(kstwobign.sf(lam))!r}),")

print("KS / Wasserstein on normals (REF_SEED vs CUR_SEED)")
for n in [2000, 20000]:
    for shift in [0.0, 0.1, 0.5]:
        ref = normals(REF_SEED, n, 0.0)
        cur = normals(CUR_SEED, n, shift)
        r = ks_2samp(ref, cur, method="asymp")
        d = float(r.statistic)
        w = wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
        print(f"  n={n} shift={shift}: D={d!r} p_scipy_asymp={float(r.pvalue)!r} "
              f"p_nr={nr_p(d, n, n)!r} w_normed={float(w)!r}")

print("KS exact small samples (every item retained)")
ref = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
cur = np.array([3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5])
r = ks_2samp(ref, cur, method="asymp")
print(f"  D={float(r.statistic)!r} p_nr={nr_p(float(r.statistic), 8, 7)!r} "
      f"w_normed={float(wasserstein_distance(ref, cur) / np.std(ref))!r}")


def pooled_table(r_counts, c_counts):
    cats = sorted(set(r_counts) | set(c_counts))
    rows = [(r_counts.get(k, 0), c_counts.get(k, 0)) for k in cats]
    rt, ct = sum(r for r, _ in rows), sum(c for _, c in rows)
    share = min(rt, ct) / (rt + ct)
    small = lambda t: t * share < 5
    kept = [row for row in rows if not small(sum(row))]
    pool = [sum(r for r, c in rows if small(r + c)), sum(c for r, c in rows if small(r + c))]
    if sum(pool) > 0:
        if kept and small(sum(pool)):
            i = min(range(len(kept)), key=lambda j: sum(kept[j]))
            kept[i] = (kept[i][0] + pool[0], kept[i][1] + pool[1])
        else:
            kept.append(tuple(pool))
    return np.array(kept).T


print("chi-square")
cases = {
    "no_pooling": ({"a": 50, "b": 30, "c": 20}, {"a": 20, "b": 30, "c": 30, "d": 20}),
    "pooling": ({"a": 60, "b": 30, "c": 6, "d": 3, "e": 1},
                {"a": 40, "b": 45, "c": 8, "f": 4, "g": 3}),
    "pool_merged": ({"a": 60, "b": 38, "c": 2}, {"a": 50, "b": 49, "d": 1}),
}
for name, (rc, cc) in cases.items():
    t = pooled_table(rc, cc)
    stat, p, dof, _ = chi2_contingency(t, correction=False)
    print(f"  {name}: table={t.tolist()} stat={float(stat)!r} p={float(p)!r} dof={dof}")

print("two-proportion z (xr, nr, xc, nc)")
for xr, nr, xc, nc in [(30, 100, 45, 100), (500, 1000, 520, 1000), (120, 400, 40, 250)]:
    p = (xr + xc) / (nr + nc)
    z = (xc / nc - xr / nr) / math.sqrt(p * (1 - p) * (1 / nr + 1 / nc))
    print(f"  ({xr}, {nr}, {xc}, {nc}, {z!r}, {float(2 * norm.sf(abs(z)))!r}),")

print("hellinger / kl(current || reference)")
vectors = [
    ([0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]),
    ([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]),
    ([1.0, 0.0], [0.0, 1.0]),
    ([0.5, 0.3, 0.2, 0.0], [0.2, 0.3, 0.3, 0.2]),
]
for r, c in vectors:
    r, c = np.array(r), np.array(c)
    h = math.sqrt(0.5 * np.sum((np.sqrt(r / r.sum()) - np.sqrt(c / c.sum())) ** 2))
    re, ce = np.where(r == 0, EPS, r), np.where(c == 0, EPS, c)
    kl = float(np.sum(rel_entr(ce, re)))
    print(f"  r={r.tolist()} c={c.tolist()} hellinger={h!r} kl={kl!r}")
