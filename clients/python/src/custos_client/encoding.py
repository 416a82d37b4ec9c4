"""Turning rows (dicts or a pandas DataFrame) into the JSON the server reads.

The rules, the same for every route:

- datetimes become RFC 3339 strings in UTC (``2026-11-26T10:00:00.250000Z``); a naive datetime
  (no time zone) is taken to be UTC; a ``date`` becomes midnight UTC;
- ``NaN``, ``None``, ``pandas.NA`` and ``NaT`` become ``null`` (a missing value);
- numpy and pandas scalars become the Python values they hold;
- infinite numbers and values of other types are refused with a ``ValueError`` that names the
  field but never the value.

pandas and numpy are optional: they are only touched when the data is one of their objects.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import math
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional

__all__ = ["rfc3339", "json_value", "iter_rows", "encode_row", "encode_ndjson", "is_dataframe"]

_UTC = _dt.timezone.utc


def rfc3339(moment: Any) -> str:
    """An RFC 3339 string in UTC for a ``datetime``/``date``/pandas ``Timestamp``/numpy
    ``datetime64``, or a string passed through unchanged (the server checks it)."""
    if isinstance(moment, str):
        return moment
    text = _time_text(moment)
    if text is None:
        raise TypeError(f"expected a datetime or an RFC 3339 string, got {type(moment).__name__}")
    return text


def _time_text(value: Any) -> Optional[str]:
    """RFC 3339 for a time-like value, or None if it is not one."""
    if isinstance(value, _dt.datetime):
        # pandas.Timestamp is a datetime subclass; keep its nanoseconds if it has any.
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            value = value.replace(tzinfo=_UTC)
        value = value.astimezone(_UTC)
        nanos = getattr(value, "nanosecond", 0) or 0
        base = value.strftime("%Y-%m-%dT%H:%M:%S")
        if nanos:
            return f"{base}.{value.microsecond * 1000 + nanos:09d}Z"
        if value.microsecond:
            return f"{base}.{value.microsecond:06d}Z"
        return base + "Z"
    if isinstance(value, _dt.date):
        return value.strftime("%Y-%m-%dT00:00:00Z")
    np = _numpy()
    if np is not None and isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        pd = _pandas()
        if pd is not None:
            return _time_text(pd.Timestamp(value))
        micros = value.astype("datetime64[us]").astype("int64")
        return _time_text(_dt.datetime(1970, 1, 1, tzinfo=_UTC) + _dt.timedelta(microseconds=int(micros)))
    return None


def _numpy():
    import sys

    return sys.modules.get("numpy")


def _pandas():
    import sys

    return sys.modules.get("pandas")


def json_value(value: Any, field: str = "?") -> Any:
    """One value as JSON-ready Python (see the module's rules). ``field`` is only used to name
    the field in an error."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _finite(value, field)
    pd = _pandas()
    if pd is not None:
        if value is pd.NA or value is pd.NaT:
            return None
    np = _numpy()
    if np is not None and isinstance(value, np.generic):
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return _finite(float(value), field)
        if isinstance(value, np.str_):
            return str(value)
        if isinstance(value, np.datetime64):
            return _time_text(value)
    text = _time_text(value)
    if text is not None:
        return text
    if isinstance(value, decimal.Decimal):
        return _finite(float(value), field)
    if isinstance(value, Mapping):
        return {str(k): json_value(v, field) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v, field) for v in value]
    raise ValueError(f"field {field!r}: values of type {type(value).__name__} cannot be sent")


def _finite(number: float, field: str) -> Optional[float]:
    if math.isnan(number):
        return None
    if math.isinf(number):
        raise ValueError(f"field {field!r}: infinite numbers cannot be sent")
    return number


def is_dataframe(data: Any) -> bool:
    """Whether ``data`` is a pandas DataFrame (without importing pandas)."""
    pd = _pandas()
    return pd is not None and isinstance(data, pd.DataFrame)


def iter_rows(data: Any) -> Iterator[Dict[str, Any]]:
    """JSON-ready rows from a DataFrame, one dict, or an iterable of dicts."""
    if is_dataframe(data):
        yield from _frame_rows(data)
        return
    if isinstance(data, Mapping):
        data = [data]
    for index, row in enumerate(data):
        if not isinstance(row, Mapping):
            raise TypeError(f"row {index} is a {type(row).__name__}, not a dict")
        yield {str(k): json_value(v, str(k)) for k, v in row.items()}


def _frame_rows(frame: Any) -> Iterator[Dict[str, Any]]:
    """Rows of a DataFrame, converted column by column (fast for large frames)."""
    names: List[str] = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise ValueError("the DataFrame has repeated column names")
    columns = [_frame_column(frame.iloc[:, i], names[i]) for i in range(len(names))]
    for values in zip(*columns):
        yield dict(zip(names, values))


def _frame_column(series: Any, name: str) -> List[Any]:
    pd = _pandas()
    kind = series.dtype.kind
    if kind == "M":  # datetime64, naive (taken as UTC) or tz-aware
        if getattr(series.dt, "tz", None) is None:
            series = series.dt.tz_localize("UTC")
        else:
            series = series.dt.tz_convert("UTC")
        return [None if v is pd.NaT else _time_text(v) for v in series.tolist()]
    if kind == "f":
        out = series.tolist()
        for i, v in enumerate(out):
            if v != v:  # NaN
                out[i] = None
            elif v in (math.inf, -math.inf):
                raise ValueError(f"field {name!r}: infinite numbers cannot be sent")
        return out
    if kind in "iub" and not pd.api.types.is_extension_array_dtype(series.dtype):
        return series.tolist()  # plain ints and bools cannot be missing
    return [json_value(v, name) for v in series.astype(object).tolist()]


def encode_row(row: Dict[str, Any]) -> bytes:
    """One JSON-ready row as compact UTF-8 JSON (one NDJSON line, without the newline)."""
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def encode_ndjson(lines: Iterable[bytes]) -> bytes:
    """NDJSON body from encoded rows."""
    return b"\n".join(lines) + b"\n"
