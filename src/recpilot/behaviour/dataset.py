"""Labelled examples for behaviour-probability models, built from an event log.

An *example* is one (user, item, time) with a 0/1 label per behaviour. Three ways to get them:

- **impressions** (the log has exposure events, ``view`` or ``impression``): every exposure is
  an example; a later ``click``/``cart``/``purchase`` of the same item by the same user is
  matched to the latest exposure before it (an as-of join), which gets label 1. Shown but not
  clicked is a negative.
- **rating**: every rating is an example labelled ``value >= rating_threshold`` ("like").
- **sampled** (only positives in the log): every event is a positive; ``k`` random other items
  at the same time are negatives. The negatives stand for the ``I - 1`` items the user did not
  pick, so the sampling rate is ``r = k / (I - 1)``.

Negatives may also be downsampled (``negative_rate``). Either way the rate ``r`` is recorded
and `prior_correction` maps a probability learnt on the sampled data back to the population:
``p' = p / (p + (1 - p) / r)``.

The history of an example is the user's events *strictly before* its timestamp, and the split
is by one global clock (train < validation < test periods), so nothing from the future leaks
into an example's features or into the training period.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from recpilot.config import BehaviourDataConfig
from recpilot.data.schema import EventLog
from recpilot.data.vocab import Vocabulary
from recpilot.errors import ConfigError, DataError
from recpilot.types import IntArray

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
LabelMode = Literal["impressions", "rating", "sampled"]

TRAIN, VALIDATION, TEST = 0, 1, 2
SPLIT_NAMES = {"train": TRAIN, "validation": VALIDATION, "test": TEST}
FUNNEL = ("click", "cart", "purchase")
#: Side-table columns never used as features (identifiers and free text).
_SKIP_COLUMNS = {"item_id", "user_id", "title", "imdb_url", "imdb_id", "tmdb_id", "zip_code"}
_MAX_CATEGORIES = 200
_TS_BITS = 42  # timestamps relative to the first event fit in 2^42 ms (139 years)


def prior_correction(p: npt.ArrayLike, rate: float) -> F64:
    """Undo negative sampling: ``p' = p / (p + (1 - p) / r)``.

    A model trained where negatives were kept with probability ``r`` sees odds ``1 / r`` times
    too high; this divides them back.

    Args:
        p: ``(N,)`` probabilities learnt on the sampled data.
        rate: share of negatives kept, in ``(0, 1]``.

    Returns:
        ``(N,)`` probabilities on the population's scale (``p`` itself when ``rate == 1``).
    """
    if not 0 < rate <= 1:
        raise ValueError(f"sampling rate must be in (0, 1], got {rate}")
    q = np.asarray(p, dtype=np.float64)
    if rate == 1:
        return q
    return np.asarray(q / (q + (1.0 - q) / rate), dtype=np.float64)


# -- side features --------------------------------------------------------------------------------
@dataclass
class SideFeatures:
    """Per-entity (user or item) features from a side table, in vocabulary order.

    Attributes:
        categorical: name → ``(n,)`` int codes, 0 = unknown, ``1..k`` the values.
        cardinality: name → number of codes including the unknown 0.
        numeric: name → ``(n,)`` float values (NaN when missing), already log-scaled when skewed.
        categories: ``(n, C)`` row-normalised category/genre memberships (items only), or None.
        category_names: the ``C`` category names.
    """

    categorical: dict[str, IntArray] = field(default_factory=dict)
    cardinality: dict[str, int] = field(default_factory=dict)
    numeric: dict[str, F64] = field(default_factory=dict)
    categories: F32 | None = None
    category_names: list[str] = field(default_factory=list)


def _side_features(table: pl.DataFrame | None, key: str, vocab: Vocabulary) -> SideFeatures:
    out = SideFeatures()
    if table is None or key not in table.columns:
        return out
    ids = pl.DataFrame({key: vocab.ids})
    try:
        frame = ids.join(
            table.with_columns(pl.col(key).cast(vocab.dtype)).unique(key, keep="first"),
            on=key,
            how="left",
            maintain_order="left",
        )
    except Exception:  # ids of another dtype: no side features rather than a wrong join
        logger.warning("side table ids do not match the %s ids; ignored", vocab.name)
        return out
    for name in frame.columns:
        if name in _SKIP_COLUMNS:
            continue
        col = frame[name]
        if name in ("category", "genres") and vocab.name == "item":
            lists = (
                pl.Series([[v] if v is not None else [] for v in col.to_list()])
                if col.dtype == pl.String
                else col
            )
            if isinstance(lists.dtype, pl.List):
                exploded = pl.DataFrame({"row": np.arange(len(lists)), "c": lists}).explode("c")
                exploded = exploded.drop_nulls("c")
                names = sorted(exploded["c"].unique().to_list())
                code = {c: j for j, c in enumerate(names)}
                mat = np.zeros((len(lists), len(names)), dtype=np.float32)
                rows = exploded["row"].to_numpy()
                cols = np.array([code[c] for c in exploded["c"].to_list()], dtype=np.int64)
                mat[rows, cols] = 1.0
                sums = mat.sum(axis=1, keepdims=True)
                out.categories = np.divide(mat, np.maximum(sums, 1.0), dtype=np.float32)
                out.category_names = names
        if col.dtype == pl.String:
            n_unique = col.n_unique()
            if n_unique <= _MAX_CATEGORIES:
                values = sorted(v for v in col.unique().to_list() if v is not None)
                code = {v: j + 1 for j, v in enumerate(values)}
                out.categorical[name] = np.array(
                    [code.get(v, 0) if v is not None else 0 for v in col.to_list()],
                    dtype=np.int64,
                )
                out.cardinality[name] = len(values) + 1
        elif col.dtype.is_numeric() and col.dtype != pl.Boolean:
            x = col.cast(pl.Float64).to_numpy().astype(np.float64)
            finite = x[np.isfinite(x)]
            if len(finite) and finite.min() >= 0 and np.median(finite) > 0:
                skew = float(np.mean(finite)) > 2.0 * float(np.median(finite))
                if skew or name == "price":
                    x = np.log1p(x)
            out.numeric[name] = x
    return out


# -- events ---------------------------------------------------------------------------------------
@dataclass
class EventTable:
    """Every event of the log as index arrays sorted by (user, time): the histories.

    Attributes:
        user: ``(E,)`` user indices.
        item: ``(E,)`` item indices.
        timestamp: ``(E,)`` ms.
        token: ``(E,)`` history token codes (`BehaviourDataset.tokens`): the event type, or
            ``rating:<value>`` for ratings.
        positive: ``(E, n_behaviours)`` the event is a positive of each behaviour.
        exposure: ``(E,)`` the event is an exposure (it counts as a chance to act).
        value: ``(E,)`` the event's value (NaN when none).
        user_start: ``(n_users + 1,)`` offsets: user ``u``'s events are
            ``user_start[u]:user_start[u + 1]``.
    """

    user: IntArray
    item: IntArray
    timestamp: IntArray
    token: IntArray
    positive: BoolArray
    exposure: BoolArray
    value: F64
    user_start: IntArray

    def before(self, users: IntArray, timestamps: IntArray) -> IntArray:
        """Absolute end (exclusive) of each user's events strictly before a time.

        Args:
            users: ``(N,)`` user indices.
            timestamps: ``(N,)`` ms.

        Returns:
            ``(N,)`` indices into the event arrays: the user's history is
            ``user_start[u]:result``.
        """
        t0 = int(self.timestamp.min()) if len(self.timestamp) else 0
        keys = (self.user << _TS_BITS) + (self.timestamp - t0)
        query = (np.asarray(users, dtype=np.int64) << _TS_BITS) + (
            np.asarray(timestamps, dtype=np.int64) - t0
        )
        return np.asarray(np.searchsorted(keys, query, side="left"), dtype=np.int64)


def _token_strings(event_type: pl.Series, value: pl.Series) -> pl.Series:
    return (
        pl.DataFrame({"t": event_type, "v": value})
        .select(
            pl.when((pl.col("t") == "rating") & pl.col("v").is_not_null())
            .then(pl.format("rating:{}", (pl.col("v") * 2).round() / 2))
            .otherwise(pl.col("t"))
        )
        .to_series()
    )


# -- the dataset ----------------------------------------------------------------------------------
@dataclass
class BehaviourDataset:
    """Examples with labels, the time split and everything features are computed from.

    Attributes:
        mode: how labels were made (``impressions``, ``rating``, ``sampled``).
        behaviours: the predicted behaviours, one label column each.
        users, items: vocabularies of the log's ids.
        tokens: history token names (event types or ``rating:<value>``).
        events: the histories (`EventTable`).
        user_side, item_side: side-table features.
        user, item, timestamp: ``(N,)`` the examples.
        labels: ``(N, n_behaviours)`` float32 0/1.
        split: ``(N,)`` `TRAIN`, `VALIDATION` or `TEST`.
        hist_end: ``(N,)`` end (exclusive) of each example's history in ``events``.
        sampling_rate: behaviour → share of negatives kept (1.0: none dropped).
        cutoffs: ``(t_validation, t_test)`` in ms: validation from the first, test from the
            second.
    """

    mode: LabelMode
    behaviours: list[str]
    users: Vocabulary
    items: Vocabulary
    tokens: list[str]
    events: EventTable
    user_side: SideFeatures
    item_side: SideFeatures
    user: IntArray
    item: IntArray
    timestamp: IntArray
    labels: F32
    split: npt.NDArray[np.int8]
    hist_end: IntArray
    sampling_rate: dict[str, float]
    cutoffs: tuple[int, int]
    rating_threshold: float | None = None

    def __len__(self) -> int:
        return len(self.user)

    def rows(self, split: str | int) -> IntArray:
        """Row indices of one split (``train``, ``validation``, ``test``)."""
        code = SPLIT_NAMES[split] if isinstance(split, str) else split
        return np.flatnonzero(self.split == code)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "behaviours": self.behaviours,
            "n_examples": len(self),
            "n_users": len(self.users),
            "n_items": len(self.items),
            "sampling_rate": self.sampling_rate,
        }
        for name, code in SPLIT_NAMES.items():
            rows = self.split == code
            out[f"n_{name}"] = int(rows.sum())
            out[f"positive_rate_{name}"] = {
                b: float(self.labels[rows, j].mean()) if rows.any() else float("nan")
                for j, b in enumerate(self.behaviours)
            }
        return out


def detect_mode(log: EventLog, config: BehaviourDataConfig) -> LabelMode:
    """The label mode ``auto`` resolves to for this log."""
    if config.labels != "auto":
        return config.labels
    types = set(log.events["event_type"].unique().to_list())
    if types & set(config.exposure_event_types):
        return "impressions"
    if "rating" in types and log.events["value"].null_count() < log.events.height:
        return "rating"
    return "sampled"


def time_cutoffs(
    timestamps: npt.ArrayLike, validation_fraction: float, test_fraction: float
) -> tuple[int, int]:
    """Global clock cut-offs so that about the given shares of examples fall after them.

    Returns:
        ``(t_validation, t_test)``: train is ``t < t_validation``, validation
        ``t_validation <= t < t_test``, test ``t >= t_test``.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if len(ts) == 0:
        raise DataError("no examples to split")
    t_val = int(np.quantile(ts, 1.0 - validation_fraction - test_fraction, method="higher"))
    t_test = int(np.quantile(ts, 1.0 - test_fraction, method="higher"))
    return t_val, max(t_test, t_val)


def split_codes(timestamps: npt.ArrayLike, cutoffs: tuple[int, int]) -> npt.NDArray[np.int8]:
    """`TRAIN`/`VALIDATION`/`TEST` of each timestamp for ``cutoffs``."""
    ts = np.asarray(timestamps, dtype=np.int64)
    out = np.full(len(ts), TRAIN, dtype=np.int8)
    out[ts >= cutoffs[0]] = VALIDATION
    out[ts >= cutoffs[1]] = TEST
    return out


def _vocabulary(ids: pl.Series, side: pl.DataFrame | None, name: str) -> Vocabulary:
    """The side table's ids in its order, then ids only the events have (stable under
    truncation of the log, so a model's indices do not depend on how much time it saw)."""
    key = f"{name}_id"
    found = ids.unique(maintain_order=True)
    if side is not None and key in side.columns:
        try:
            listed = side[key].cast(ids.dtype).drop_nulls().unique(maintain_order=True)
            found = pl.concat([listed, found.filter(~found.is_in(listed.implode()))])
        except Exception:
            logger.warning("%s side table ids do not match the event ids; ignored", name)
    return Vocabulary(found, name=name)


def build_dataset(
    log: EventLog,
    config: BehaviourDataConfig | None = None,
    *,
    cutoffs: tuple[int, int] | None = None,
) -> BehaviourDataset:
    """Labelled, time-split examples from an event log.

    Args:
        log: canonical events (with optional item/user side tables).
        config: label mode, behaviours, sampling and split options.
        cutoffs: ``(t_validation, t_test)`` in ms, instead of the configured fractions.

    Returns:
        The `BehaviourDataset`.

    Raises:
        DataError: the log has no usable examples or labels.
        ConfigError: options that do not fit the log (unknown behaviours, downsampling with
            several behaviours).
    """
    cfg = config if config is not None else BehaviourDataConfig()
    if not log.has_timestamps:
        raise DataError(
            f"{log.source}: behaviour examples need real timestamps for the time split; "
            "this log only has the row order"
        )
    mode = detect_mode(log, cfg)
    events = log.events.with_row_index("_row").sort(["user_id", "timestamp", "_row"])
    if events.height == 0:
        raise DataError(f"{log.source or 'event log'}: no events")
    users = _vocabulary(events["user_id"], log.users, "user")
    items = _vocabulary(events["item_id"], log.items, "item")
    u = users.index(events["user_id"])
    i = items.index(events["item_id"])
    ts = events["timestamp"].to_numpy().astype(np.int64)
    etype = events["event_type"]
    value = events["value"].cast(pl.Float64).to_numpy().astype(np.float64)
    token_str = _token_strings(etype, events["value"])
    tokens = sorted(token_str.unique().to_list())
    token = pl.Series(token_str).replace_strict(
        {t: j for j, t in enumerate(tokens)}, return_dtype=pl.Int64
    )
    types = etype.to_numpy()
    exposure_types = set(cfg.exposure_event_types)
    present = set(etype.unique().to_list())

    threshold: float | None = None
    if mode == "impressions":
        if not present & exposure_types:
            raise DataError(
                f"{log.source}: labels 'impressions' need exposure events of type "
                f"{sorted(exposure_types)}; the log has {sorted(present)}"
            )
        candidates = [t for t in FUNNEL if t in present] + sorted(
            present - exposure_types - set(FUNNEL)
        )
        behaviours = list(cfg.behaviours) if cfg.behaviours else candidates
        missing = [b for b in behaviours if b not in present or b in exposure_types]
        if missing:
            raise ConfigError(
                f"behaviours {missing} are not outcome event types of this log; "
                f"choose from {candidates}"
            )
        if not behaviours:
            raise DataError(f"{log.source}: only exposure events, nothing to predict")
        exposure = np.isin(types, list(exposure_types))
        positive = np.stack([types == b for b in behaviours], axis=1)
    elif mode == "rating":
        threshold = cfg.rating_threshold
        exposure = (types == "rating") & ~np.isnan(value)
        if not exposure.any():
            raise DataError(f"{log.source}: labels 'rating' need rating events with values")
        behaviours = ["like"]
        positive = (exposure & (np.nan_to_num(value, nan=-np.inf) >= threshold))[:, None]
    else:
        wanted = set(cfg.behaviours) if cfg.behaviours else present
        unknown = wanted - present
        if unknown:
            raise ConfigError(
                f"behaviours {sorted(unknown)} are not event types of this log: {sorted(present)}"
            )
        behaviours = [next(iter(wanted)) if len(wanted) == 1 else "interaction"]
        exposure = np.isin(types, list(wanted))
        positive = exposure[:, None].copy()

    user_start = np.searchsorted(u, np.arange(len(users) + 1)).astype(np.int64)
    table = EventTable(
        user=u,
        item=i,
        timestamp=ts,
        token=token.to_numpy().astype(np.int64),
        positive=positive,
        exposure=exposure,
        value=value,
        user_start=user_start,
    )
    rng = np.random.default_rng(cfg.seed)
    rates = dict.fromkeys(behaviours, 1.0)

    if mode == "impressions":
        ex_rows = np.flatnonzero(exposure)
        labels = np.zeros((len(ex_rows), len(behaviours)), dtype=np.float32)
        expo = pl.DataFrame(
            {"u": u[ex_rows], "i": i[ex_rows], "t": ts[ex_rows], "ex": np.arange(len(ex_rows))}
        ).sort("t")
        for j, _ in enumerate(behaviours):
            out_rows = np.flatnonzero(positive[:, j])
            outcomes = pl.DataFrame({"u": u[out_rows], "i": i[out_rows], "t": ts[out_rows]})
            matched = outcomes.sort("t").join_asof(
                expo, on="t", by=["u", "i"], strategy="backward", check_sortedness=False
            )
            ex = matched["ex"].drop_nulls().to_numpy()
            n_orphans = len(out_rows) - len(ex)
            if n_orphans:
                logger.info(
                    "%d %s events have no earlier exposure; ignored", n_orphans, behaviours[j]
                )
            labels[ex, j] = 1.0
        ex_user, ex_item, ex_ts = u[ex_rows], i[ex_rows], ts[ex_rows]
    elif mode == "rating":
        ex_rows = np.flatnonzero(exposure)
        labels = positive[ex_rows].astype(np.float32)
        ex_user, ex_item, ex_ts = u[ex_rows], i[ex_rows], ts[ex_rows]
    else:
        pos_rows = np.flatnonzero(exposure)
        k = cfg.negatives_per_positive
        n_items = len(items)
        if n_items < 2:
            raise DataError("sampled negatives need at least 2 items")
        # uniform over the other items: draw from I - 1 and skip the positive's own index
        draws = rng.integers(0, n_items - 1, size=(len(pos_rows), k))
        draws = draws + (draws >= i[pos_rows][:, None])
        ex_user = np.concatenate([u[pos_rows], np.repeat(u[pos_rows], k)])
        ex_item = np.concatenate([i[pos_rows], draws.ravel()])
        ex_ts = np.concatenate([ts[pos_rows], np.repeat(ts[pos_rows], k)])
        labels = np.concatenate([np.ones(len(pos_rows)), np.zeros(len(pos_rows) * k)])
        labels = labels.astype(np.float32)[:, None]
        rates[behaviours[0]] = min(1.0, k / (n_items - 1))

    if cfg.negative_rate < 1.0:
        if len(behaviours) != 1:
            raise ConfigError(
                f"negative_rate < 1 needs exactly one behaviour (got {behaviours}): with several "
                "funnel stages one sampling rate does not correct every head; set "
                "data.behaviours to one of them"
            )
        negative = labels[:, 0] == 0
        keep = ~negative | (rng.random(len(labels)) < cfg.negative_rate)
        ex_user, ex_item, ex_ts, labels = ex_user[keep], ex_item[keep], ex_ts[keep], labels[keep]
        rates[behaviours[0]] *= cfg.negative_rate

    if len(ex_user) == 0:
        raise DataError(f"{log.source}: no examples could be built (mode {mode})")
    order = np.lexsort((ex_user, ex_item, ex_ts))
    ex_user, ex_item, ex_ts, labels = ex_user[order], ex_item[order], ex_ts[order], labels[order]
    if cutoffs is None:
        cutoffs = time_cutoffs(ex_ts, cfg.validation_fraction, cfg.test_fraction)
    dataset = BehaviourDataset(
        mode=mode,
        behaviours=behaviours,
        users=users,
        items=items,
        tokens=tokens,
        events=table,
        user_side=_side_features(log.users, "user_id", users),
        item_side=_side_features(log.items, "item_id", items),
        user=ex_user,
        item=ex_item,
        timestamp=ex_ts,
        labels=labels,
        split=split_codes(ex_ts, cutoffs),
        hist_end=table.before(ex_user, ex_ts),
        sampling_rate=rates,
        cutoffs=cutoffs,
        rating_threshold=threshold,
    )
    logger.info("behaviour dataset: %s", dataset.summary())
    return dataset
