"""Regenerates the fixtures used by tests/performance.rs and tests/cbpe.rs.

Run (not a build or test dependency):
    NML_DISABLE_USAGE_LOGGING=1 python3 crates/custos-stats/tests/golden/performance_golden.py
with numpy, pandas, pyarrow, scikit-learn 1.9 and nannyml 0.13.1 installed. Reads the NannyML
datasets from <repo>/../shared/data/nannyml (the same place the Rust tests read them) and writes
tests/fixtures/performance/*.json plus mc_rows.csv.

What is computed, and with what:
  * binary.json: synthetic_sample_analysis.csv joined on `id` with the _gt file, in file order,
    chunks of 5,000 rows plus "overall": sklearn confusion_matrix, accuracy_score,
    precision/recall/f1_score (pos_label=1), roc_auc_score(y, y_pred_proba) and
    log_loss(y, y_pred_proba, labels=[0, 1]).
  * regression.json: regression_synthetic_analysis.csv + _targets.csv joined on `id`, chunks of
    5,000: mean_absolute_error, mean_squared_error, root_mean_squared_error,
    mean_absolute_percentage_error, r2_score.
  * multiclass.json + mc_rows.csv: mc_analysis.parquet + mc_analysis_gt.parquet joined on `id`.
    The Rust test has no Parquet reader, so the rows it needs go into mc_rows.csv compactly:
    class indices (into the sorted class list) and probabilities in hundredths (the file's
    probabilities all have two decimals; asserted below, so k / 100 is the very same float).
    Metrics: accuracy, macro and per-class precision/recall/f1 (zero_division=0, sklearn's
    default value), roc_auc_score(multi_class='ovr', average='macro' and None),
    log_loss(labels=classes).
  * cbpe_<dataset>.json: nannyml.CBPE(problem_type='classification_binary', metrics roc_auc, f1,
    accuracy, precision, recall, chunk_size=5000) fitted on the reference file, estimated on the
    analysis file with its labels merged in; per analysis chunk: value, sampling_error,
    realized, lower/upper confidence boundary. Also NannyML's needs_calibration decision, the
    fitted isotonic knots (X_thresholds_, y_thresholds_), NannyML's sampling-error components
    and, computed here independently, the AUROC component as its expectation over random tie
    orders (what custos-stats computes from histograms; see cbpe.rs).
  * calibration_cases.json: two synthetic miscalibrated references (scores p^2 and
    0.5 + (p - 0.5)/2 for labels ~ Bernoulli(p)) as histograms, with NannyML's needs_calibration
    decision on the rows.
"""
import json
import os
import struct
import warnings

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
import nannyml as nml  # noqa: E402
from nannyml.calibration import IsotonicCalibrator, needs_calibration  # noqa: E402

warnings.filterwarnings("ignore")

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.normpath(os.path.join(CRATE, "..", "..", "..", "shared", "data", "nannyml"))
OUT = os.path.join(CRATE, "tests", "fixtures", "performance")
CHUNK = 5000


def labelled(n):
    """("overall", 0, n) then ("[s:e)", s, e) per chunk of CHUNK rows in file order."""
    return [("overall", 0, n)] + [(f"[{s}:{min(s + CHUNK, n)})", s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]


def f(x):
    x = float(x)
    return None if np.isnan(x) else x


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def dump(name, obj):
    with open(os.path.join(OUT, name), "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")


def binary():
    a = pd.read_csv(os.path.join(DATA, "synthetic_sample_analysis.csv"))
    gt = pd.read_csv(os.path.join(DATA, "synthetic_sample_analysis_gt.csv"))
    d = a.merge(gt, on="id", how="inner", sort=False)
    assert (d["id"].to_numpy() == a["id"].to_numpy()).all()
    out = []
    for label, s, e in labelled(len(d)):
        c = d.iloc[s:e]
        y, yp, p = c.work_home_actual.to_numpy(), c.y_pred.to_numpy(), c.y_pred_proba.to_numpy()
        tn, fp, fn, tp = confusion_matrix(y, yp, labels=[0, 1]).ravel()
        out.append(
            dict(
                chunk=label, start=s, end=e, rows=int(e - s),
                tp=int(tp), fp=int(fp), tn=int(tn), fn=int(fn),
                accuracy=accuracy_score(y, yp),
                precision=precision_score(y, yp, zero_division=0),
                recall=recall_score(y, yp, zero_division=0),
                f1=f1_score(y, yp, zero_division=0),
                roc_auc=roc_auc_score(y, p),
                log_loss=log_loss(y, p, labels=[0, 1]),
            )
        )
    dump("binary.json", out)


def regression():
    a = pd.read_csv(os.path.join(DATA, "regression_synthetic_analysis.csv"))
    t = pd.read_csv(os.path.join(DATA, "regression_synthetic_analysis_targets.csv"))
    d = a.merge(t, on="id", how="inner", sort=False)
    assert (d["id"].to_numpy() == a["id"].to_numpy()).all()
    out = []
    for label, s, e in labelled(len(d)):
        c = d.iloc[s:e]
        y, yh = c.y_true.to_numpy(), c.y_pred.to_numpy()
        out.append(
            dict(
                chunk=label, start=s, end=e, rows=int(e - s),
                mae=mean_absolute_error(y, yh),
                mse=mean_squared_error(y, yh),
                rmse=root_mean_squared_error(y, yh),
                mape=mean_absolute_percentage_error(y, yh),
                r2=r2_score(y, yh),
            )
        )
    dump("regression.json", out)


def multiclass():
    a = pd.read_parquet(os.path.join(DATA, "mc_analysis.parquet"))
    gt = pd.read_parquet(os.path.join(DATA, "mc_analysis_gt.parquet"))
    d = a.merge(gt, on="id", how="inner", sort=False)
    assert (d["id"].to_numpy() == a["id"].to_numpy()).all()
    prefix = "y_pred_proba_"
    classes = sorted(c[len(prefix):] for c in d.columns if c.startswith(prefix))
    cols = [prefix + c for c in classes]
    proba = d[cols].to_numpy()
    hundredths = np.round(proba * 100).astype(int)
    assert (hundredths / 100 == proba).all(), "probabilities must have two decimals"
    idx = {c: i for i, c in enumerate(classes)}
    with open(os.path.join(OUT, "mc_rows.csv"), "w") as fh:
        fh.write("# mc_analysis.parquet + mc_analysis_gt.parquet (NannyML 0.13.1, Apache-2.0), joined on id.\n")
        fh.write("# actual,predicted: index into classes; then per class probability x 100. Classes: "
                 + ",".join(classes) + "\n")
        for yt, yp, ks in zip(d.y_true, d.y_pred, hundredths):
            fh.write(f"{idx[yt]},{idx[yp]}," + ",".join(str(k) for k in ks) + "\n")
    out = []
    for label, s, e in labelled(len(d)):
        c = d.iloc[s:e]
        y, yp, p = c.y_true.to_numpy(), c.y_pred.to_numpy(), c[cols].to_numpy()
        labels = sorted(set(y) | set(yp))
        out.append(
            dict(
                chunk=label, start=s, end=e, rows=int(e - s),
                labels=labels,
                confusion=confusion_matrix(y, yp, labels=labels).tolist(),
                accuracy=accuracy_score(y, yp),
                macro_precision=precision_score(y, yp, average="macro", zero_division=0),
                macro_recall=recall_score(y, yp, average="macro", zero_division=0),
                macro_f1=f1_score(y, yp, average="macro", zero_division=0),
                precision=precision_score(y, yp, average=None, labels=labels, zero_division=0).tolist(),
                recall=recall_score(y, yp, average=None, labels=labels, zero_division=0).tolist(),
                f1=f1_score(y, yp, average=None, labels=labels, zero_division=0).tolist(),
                macro_roc_auc=roc_auc_score(y, p, multi_class="ovr", average="macro", labels=classes),
                roc_auc=roc_auc_score(y, p, multi_class="ovr", average=None, labels=classes).tolist(),
                log_loss=log_loss(y, p, labels=classes),
            )
        )
    dump("multiclass.json", dict(classes=classes, chunks=out))


def expected_auroc_component(y, p):
    """NannyML's AUROC sampling-error component with ties broken by expectation (see cbpe.rs)."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    if y.mean() > 0.5:
        y, p = 1 - y, 1 - p
    bins = np.round(p * 10000).astype(int)
    g = pd.DataFrame({"b": bins, "y": y}).groupby("b").y.agg(["sum", "count"]).sort_index()
    below = 0
    s1 = 0.0
    s2 = 0.0
    for k, c in zip(g["sum"], g["count"]):
        m = c - k
        s1 += k * (below + m / 2)
        s2 += k * (below * below + below * m + m * (2 * m + 1) / 6)
        below += m
    pos = y.sum()
    neg = len(y) - pos
    return float(np.sqrt(s2 / pos - (s1 / pos) ** 2) / neg), float(pos / len(y))


def cbpe(name, y_true, threshold):
    ref = pd.read_csv(os.path.join(DATA, f"{name}_reference.csv"))
    ana = pd.read_csv(os.path.join(DATA, f"{name}_analysis.csv"))
    gt = pd.read_csv(os.path.join(DATA, f"{name}_analysis_gt.csv"))
    ana = ana.merge(gt, on="id", how="inner", sort=False)
    for d in (ref, ana):
        assert ((d.y_pred_proba >= threshold).astype(int) == d.y_pred).all()
        d["timestamp"] = pd.to_datetime(d["timestamp"])
        # NannyML's chunker sorts by timestamp (unstably). The files are already sorted, and no
        # pair of equal timestamps straddles a chunk boundary, so every chunk holds the same rows
        # as the file-order chunk the Rust tests build.
        t = d["timestamp"]
        assert t.is_monotonic_increasing
        assert all(t.iloc[b - 1] != t.iloc[b] for b in range(CHUNK, len(t), CHUNK))
    metrics = ["roc_auc", "f1", "accuracy", "precision", "recall"]
    est = nml.CBPE(
        problem_type="classification_binary", y_pred_proba="y_pred_proba", y_pred="y_pred",
        y_true=y_true, timestamp_column_name="timestamp", metrics=metrics, chunk_size=CHUNK,
    )
    est.fit(ref)
    res = est.estimate(ana).filter(period="analysis").to_df()
    iso = IsotonicCalibrator()
    iso.fit(ref.y_pred_proba, ref[y_true])
    rows = []
    for i in range(len(res)):
        r = res.iloc[i]
        s, e = int(r[("chunk", "start_index")]), int(r[("chunk", "end_index")]) + 1
        row = dict(start=s, end=e, rows=e - s)
        for m in metrics:
            row[m] = dict(
                value=f(r[(m, "value")]), sampling_error=f(r[(m, "sampling_error")]),
                realized=f(r[(m, "realized")]),
                lower=f(r[(m, "lower_confidence_boundary")]), upper=f(r[(m, "upper_confidence_boundary")]),
            )
        rows.append(row)
    comps = {m.name: [f(v) for v in m._sampling_error_components] for m in est.metrics}
    dump(
        f"cbpe_{name}.json",
        dict(
            dataset=name, y_true=y_true, threshold=threshold,
            needs_calibration=bool(est.needs_calibration),
            knots_x=[float(v) for v in iso._regressor.X_thresholds_],
            knots_y=[float(v) for v in iso._regressor.y_thresholds_],
            # Bit patterns, so the Rust test can check the knots bit for bit (JSON float parsing
            # may be off by one ULP).
            knots_y_bits=[bits(v) for v in iso._regressor.y_thresholds_],
            nannyml_components=comps,
            expected_auroc_component=list(expected_auroc_component(ref[y_true], ref.y_pred_proba)),
            chunks=rows,
        ),
    )


def calibration_cases():
    rng = np.random.default_rng(20240611)
    cases = []
    # Only clearly miscalibrated references: on calibrated scores NannyML's decision is a coin
    # flip between random splits (measured: 5 to 9 "True" out of 10 seeds), so no fixture there.
    for name, transform in [("squared", lambda p: p * p), ("shrunk", lambda p: 0.5 + (p - 0.5) / 2)]:
        p = np.round(rng.uniform(0, 1, 20000), 2)
        y = (rng.uniform(0, 1, len(p)) < p).astype(int)
        s = np.round(transform(p), 4)
        decision = needs_calibration(pd.Series(y), pd.Series(s), IsotonicCalibrator())
        bins = np.round(s * 10000).astype(int)
        pos = np.bincount(bins[y == 1], minlength=10001)
        neg = np.bincount(bins[y == 0], minlength=10001)
        cases.append(
            dict(
                name=name, needs_calibration=bool(decision),
                bins=[[int(b), int(pos[b]), int(neg[b])] for b in range(10001) if pos[b] + neg[b] > 0],
            )
        )
    dump("calibration_cases.json", cases)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    binary()
    regression()
    multiclass()
    cbpe("synthetic_sample", "work_home_actual", 0.48)
    cbpe("california_housing", "clf_target", 0.8)
    calibration_cases()
