"""Pydantic models for every user-set option, and YAML/TOML loading."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recpilot.errors import ConfigError

DataFormat = Literal[
    "movielens-100k",
    "movielens-1m",
    "movielens-latest",
    "sequence-lines",
    "csv",
    "parquet",
    "jsonl",
    "synthetic",
]


class StrictModel(BaseModel):
    """Base of every config: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# -- data -----------------------------------------------------------------------------------------
class ColumnMapping(StrictModel):
    """Which source column holds each field of the event schema (generic readers)."""

    user_id: str = "user_id"
    item_id: str = "item_id"
    timestamp: str | None = Field(
        "timestamp", description="None: use the row order as time (an ordinal clock)"
    )
    event_type: str | None = Field(
        None,
        description="None: a column literally named event_type is used if present, "
        "otherwise every row gets `default_event_type`",
    )
    value: str | None = None
    session_id: str | None = None
    timestamp_unit: Literal["s", "ms", "us", "ns", "datetime"] = Field(
        "s", description="unit of numeric timestamps, or 'datetime' for date/time strings"
    )
    timestamp_format: str | None = Field(
        None, description="strftime format for datetime strings; None: ISO 8601"
    )
    default_event_type: str = "interaction"


class DataConfig(StrictModel):
    path: Path | None = None
    format: DataFormat = "synthetic"
    columns: ColumnMapping = Field(default_factory=ColumnMapping)
    encoding: str = Field("utf-8", description="text encoding of the input files")
    separator: str = ","
    items_path: Path | None = Field(None, description="optional item side table (generic formats)")
    users_path: Path | None = Field(None, description="optional user side table (generic formats)")


class PreprocessConfig(StrictModel):
    """Cleaning applied before vocabularies and splits (in this order)."""

    event_types: list[str] | None = Field(None, description="keep only these event types")
    min_rating: float | None = Field(
        None, description="implicit feedback: keep events whose value >= this (rating threshold)"
    )
    deduplicate: Literal["none", "exact", "user_item"] = Field(
        "exact",
        description="exact: drop identical rows; user_item: keep each user's first event per item",
    )
    event_weights: dict[str, float] = Field(
        default_factory=dict, description="weight per event type (default 1.0)"
    )
    min_user_events: int = Field(1, ge=1, description="drop users with fewer events (after k-core)")
    k_core: int = Field(1, ge=1, description="iterate until every user and item has >= k events")

    @model_validator(mode="after")
    def _weights_positive(self) -> PreprocessConfig:
        bad = {k: v for k, v in self.event_weights.items() if v < 0}
        if bad:
            raise ValueError(f"event_weights must be >= 0, got {bad}")
        return self


class SplitConfig(StrictModel):
    strategy: Literal["leave_one_out", "temporal"] = "leave_one_out"
    test_fraction: float = Field(0.1, gt=0, lt=1, description="temporal: share of events in test")
    validation_fraction: float = Field(
        0.1, gt=0, lt=1, description="temporal: share of events in validation (before test)"
    )


# -- models ---------------------------------------------------------------------------------------
class PopularityConfig(StrictModel):
    name: Literal["popularity"] = "popularity"
    weighted: bool = Field(False, description="count event weights instead of events")


class ItemKNNConfig(StrictModel):
    name: Literal["itemknn"] = "itemknn"
    neighbours: int = Field(200, ge=1, description="similar items kept per item")
    shrink: float = Field(0.0, ge=0, description="cosine shrinkage (Bell & Koren)")
    weighted: bool = False


class EASEConfig(StrictModel):
    name: Literal["ease"] = "ease"
    l2: float = Field(500.0, gt=0, description="L2 regularisation λ")
    weighted: bool = False
    max_items: int = Field(60_000, ge=1, description="refuse larger catalogues (dense I×I matrix)")


class ALSConfig(StrictModel):
    name: Literal["als"] = "als"
    factors: int = Field(64, ge=1)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(10.0, gt=0, description="confidence = 1 + alpha * weight")
    iterations: int = Field(15, ge=1)
    weighted: bool = False
    seed: int = 0


class TrainerConfig(StrictModel):
    """How a neural model is trained (`recpilot.training.trainer.Trainer`).

    The learning rate warms up linearly for ``warmup_epochs`` and then follows a cosine decay
    to ``min_lr_ratio * learning_rate`` at the end of ``max_epochs``; with ``max_minutes`` set,
    the decay also completes at the deadline, whichever comes first (training is then no longer
    bit-for-bit reproducible, since progress depends on wall time).
    """

    max_epochs: int = Field(200, ge=1, description="upper bound on passes over the users")
    max_minutes: float | None = Field(
        None, gt=0, description="wall-clock budget (training and validation); None: no budget"
    )
    batch_size: int = Field(128, ge=1, description="sequences (users) per optimisation step")
    learning_rate: float = Field(1e-3, gt=0)
    min_lr_ratio: float = Field(
        0.1, ge=0, le=1, description="final learning rate of the cosine decay, as a share"
    )
    warmup_epochs: float = Field(1.0, ge=0, description="linear warm-up length in epochs")
    weight_decay: float = Field(
        0.1, ge=0, description="AdamW decoupled weight decay, applied to weight matrices only"
    )
    decay_embeddings: bool = Field(
        False, description="also decay the item and position embedding tables"
    )
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float | None = Field(1.0, gt=0, description="max global gradient norm")
    patience: int = Field(
        10,
        ge=1,
        description="stop after this many validations without improvement (validations, not "
        "epochs: with validate_every 3, patience 4 waits 12 epochs)",
    )
    validate_every: int = Field(
        1,
        ge=1,
        description="validate (early stopping, best state, checkpoint) every this many epochs "
        "and after the last one; > 1 saves the validation cost of the epochs between",
    )
    monitor: str = Field("NDCG@10", description="validation metric for early stopping")
    length_bucketing: int = Field(
        32,
        ge=1,
        description="sort pools of this many batches by sequence length (less padding); 1: off",
    )
    pad_multiple: int = Field(
        32,
        ge=1,
        description="round each batch's padded length up to a multiple of this (at most "
        "max_len): few batch shapes keep oneDNN's per-shape kernel cache, and so the process "
        "memory, small on long runs; 1: pad to the batch's longest sequence",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: CPU autocast for the forward pass (matrix products in bf16)"
    )
    threads: int | None = Field(
        None, ge=1, description="torch threads while training; None: keep torch's setting"
    )
    device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu",
        description="where the module trains (and then scores); auto: cuda when available. "
        "Saved artefacts always hold CPU tensors",
    )
    flush_denormal: bool = Field(
        True,
        description="flush denormal floats to zero while training (CPU arithmetic on them is "
        "many times slower; values below 1e-38 change nothing that matters)",
    )
    checkpoint_dir: Path | None = Field(
        None, description="write the last and best states here after every validation"
    )
    resume: bool = Field(True, description="continue from checkpoint_dir/last if it exists")
    log_path: Path | None = Field(None, description="append one JSON line per epoch here")
    show_progress: bool | None = Field(None, description="None: on for an interactive stderr")


class SASRecConfig(StrictModel):
    """SASRec (Kang & McAuley 2018) trained the SASRec+ way by default.

    Every position of each user's most recent ``max_len + 1`` events is a training example in
    one pass; the default loss is the full softmax over the catalogue (Klenitskiy & Vasilev,
    RecSys 2023).
    """

    name: Literal["sasrec"] = "sasrec"
    max_len: int = Field(200, ge=1, description="most recent events the model reads")
    d_model: int = Field(64, ge=1, description="embedding and hidden size D")
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(1, ge=1)
    d_ff: int | None = Field(None, ge=1, description="feed-forward width; None: 4 * d_model")
    dropout: float = Field(0.2, ge=0, lt=1, description="on embeddings and residual branches")
    attn_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="on attention weights; > 0 is slower on CPU (no fused attention kernel)",
    )
    positions: Literal["from_end", "from_start"] = Field(
        "from_end",
        description="from_end: position 0 is the most recent event (as SASRec's left padding)",
    )
    loss: Literal["full", "sampled", "gbce"] = Field(
        "full",
        description="full: softmax over all items; sampled: sampled softmax with log-Q "
        "correction; gbce: generalised BCE (Petrov & Macdonald 2023)",
    )
    head_precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="full loss: the catalogue-sized matrix products of training in bf16 (the "
        "softmax stays fp32; scoring is always fp32); auto: bf16 where the CPU has native bf16 "
        "(AVX512-BF16 or AMX), else fp32",
    )
    n_negatives: int = Field(256, ge=1, description="negatives per step (sampled and gbce)")
    negative_sampler: Literal["uniform", "in_batch"] = Field(
        "uniform",
        description="sampled softmax: uniform over items, or the batch's targets (log-Q by "
        "training frequency)",
    )
    gbce_t: float = Field(0.75, ge=0, le=1, description="gBCE calibration t (0: plain BCE)")
    eval_batch_size: int = Field(512, ge=1, description="users per forward pass when scoring")
    event_types: bool | None = Field(
        None,
        description="add a learned event-type vector (view, cart, purchase, ...) to each history "
        "event's item vector; the types are learned at fit time and saved with the model, a type "
        "never seen in training counts as unknown; None: on when the training data has more "
        "than one event type",
    )
    text_features: bool = Field(
        False,
        description="hybrid items: vector = ID embedding + learned projection of the item's text "
        "vector (set with set_text_vectors before fit); items without training events, and "
        "items added later with add_items, are represented by their text alone",
    )
    id_dropout: float = Field(
        0.3,
        ge=0,
        lt=1,
        description="text_features: share of item ID embeddings hidden in each training step, so "
        "the model learns to rely on text when an ID is unknown",
    )
    freshness: bool = Field(
        False,
        description="text_features: learned logit bias on each candidate item's age at the query "
        "time (log2 buckets of the time since the item was first seen: first training event, or "
        "addition time for items added later); items not seen before the query time are scored "
        "from their text alone and share a 'new item' bias, in training as when serving, so "
        "brand-new items can win a full ranking. Needs loss: full (SASRec, HSTU)",
    )
    freshness_buckets: int = Field(
        42,
        ge=2,
        le=62,
        description="freshness: log2 buckets of the age in the event clock's unit (milliseconds), "
        "'never seen' included; 42 reaches 2**40 ms, 35 years",
    )
    text_only_boost: float = Field(
        0.0,
        description="text_features: logit added when scoring to the items the model knows from "
        "their text alone (no training event: cold catalogue items, items added later), a "
        "cold-start exploration knob that trades warm precision for new-item exposure (chosen "
        "on validation; 0: calibrated scores)",
    )
    training: TrainerConfig = Field(default_factory=TrainerConfig)
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide(self) -> SASRecConfig:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})"
            )
        if self.freshness and not (self.text_features and self.loss == "full"):
            raise ValueError(
                "freshness needs text_features: true (a new item is scored from its text) and "
                f"loss: full, got text_features: {self.text_features}, loss: {self.loss}"
            )
        return self


class BERT4RecConfig(SASRecConfig):
    """BERT4Rec (Sun et al. 2019): bidirectional blocks trained by masked-item prediction.

    Shares SASRec's fields (the same embeddings, losses and samplers); ``max_len`` counts the
    ``[MASK]`` appended at inference, so the model reads the last ``max_len - 1`` events. The
    loss is computed at the masked positions only.
    """

    name: Literal["bert4rec"] = "bert4rec"  # type: ignore[assignment]
    max_len: int = Field(200, ge=2, description="input slots, the appended [MASK] included")
    mask_prob: float = Field(
        0.2, gt=0, le=1, description="share of positions hidden behind [MASK] in training"
    )


class HSTUConfig(SASRecConfig):
    """HSTU-style generative recommender (Zhai et al. 2024): pointwise aggregated attention.

    Shares SASRec's fields (the same embeddings, losses and samplers); ``d_ff``,
    ``attn_dropout`` and ``positions`` do not apply (an HSTU block has no feed-forward layer
    and no softmax; positions count from the most recent event).
    """

    name: Literal["hstu"] = "hstu"  # type: ignore[assignment]
    time_buckets: int = Field(
        32, ge=0, description="log-2 buckets of time gaps in the relative attention bias; 0: off"
    )
    position_bias: bool = Field(True, description="relative position bias in the attention")
    time_dropout: float = Field(
        0.1,
        ge=0,
        le=1,
        description="share of training sequences whose timestamps are hidden, so the model also "
        "serves queries without event times",
    )


class TextKNNConfig(StrictModel):
    """Content-only recommender: nearest neighbours in item-text space of the history's mean.

    Item text vectors come from an `recpilot.content.ItemEncoder` (set on the model before
    ``fit``); scores are cosines between the (recency-weighted) mean of the last
    ``max_history`` history vectors and every item's vector.
    """

    name: Literal["textknn"] = "textknn"
    max_history: int = Field(20, ge=1, description="most recent history items averaged")
    decay: float = Field(
        0.9, gt=0, le=1, description="weight of an event t steps before the latest: decay**t"
    )


ModelConfig = Annotated[
    PopularityConfig
    | ItemKNNConfig
    | EASEConfig
    | ALSConfig
    | SASRecConfig
    | BERT4RecConfig
    | HSTUConfig
    | TextKNNConfig,
    Field(discriminator="name"),
]


# -- evaluation and experiments -------------------------------------------------------------------
class EvaluationConfig(StrictModel):
    ks: list[int] = Field(default_factory=lambda: [10, 20], min_length=1)
    exclude_seen: bool = True
    batch_size: int = Field(1024, ge=1, description="users scored per batch")
    split: Literal["validation", "test"] = "test"
    confidence: float = Field(0.95, gt=0, lt=1)

    @model_validator(mode="after")
    def _ks_positive(self) -> EvaluationConfig:
        if any(k < 1 for k in self.ks):
            raise ValueError(f"ks must be positive, got {self.ks}")
        self.__dict__["ks"] = sorted(set(self.ks))
        return self


class SimulatorConfig(StrictModel):
    """The synthetic behaviour simulator (the embedded default data).

    See `recpilot.data.simulator` for the generative model these knobs parameterise.
    """

    n_users: int = Field(2000, ge=1)
    n_items: int = Field(1000, ge=2)
    n_categories: int = Field(12, ge=1)
    sessions_per_user: float = Field(4.0, gt=0, description="mean sessions per user")
    session_length: float = Field(6.0, gt=0, description="mean views per session")
    seed: int = 0
    latent_dim: int = Field(16, ge=2, description="dimension of user and item latent vectors")
    item_spread: float = Field(
        0.6, ge=0, description="spread of item vectors around their category centroid"
    )
    zipf_exponent: float = Field(
        1.0, ge=0, description="power-law exponent of item popularity (view odds ~ rank^-s)"
    )
    taste_weight: float = Field(
        2.0, ge=0, description="how strongly user-item affinity steers which items are viewed"
    )
    taste_concentration: float = Field(
        2.5, ge=0, description="sd of initial category preference logits (higher: fewer favourites)"
    )
    taste_drift: float = Field(
        0.3, ge=0, description="sd per session of the random walk of category preference logits"
    )
    n_successors: int = Field(3, ge=1, description="designated successor items per item (series)")
    follow_probability: float = Field(
        0.35, ge=0, le=1, description="chance that a view follows a successor of the last click"
    )
    click_bias: float = Field(-2.5, description="click logit intercept")
    click_affinity: float = Field(1.5, description="click logit weight of user-item affinity")
    click_successor: float = Field(
        1.0, description="click logit bonus for a successor of the user's last clicked item"
    )
    click_quality_sd: float = Field(0.5, ge=0, description="sd of per-item click quality")
    cart_bias: float = Field(-1.5, description="cart-given-click logit intercept")
    cart_affinity: float = Field(0.8, description="cart-given-click logit weight of affinity")
    cart_price: float = Field(
        0.6, description="cart-given-click logit penalty per sd of log price (times sensitivity)"
    )
    purchase_bias: float = Field(0.2, description="purchase-given-cart logit intercept")
    purchase_affinity: float = Field(0.5, description="purchase-given-cart weight of affinity")
    purchase_price: float = Field(
        0.8, description="purchase-given-cart penalty per sd of log price (times sensitivity)"
    )
    mean_session_gap_hours: float = Field(
        36.0, gt=0, description="mean gap between a user's sessions"
    )
    mean_view_gap_seconds: float = Field(
        45.0, gt=0, description="mean gap from the end of one view's funnel to the next view"
    )
    start_timestamp_ms: int = Field(
        1_767_225_600_000, description="clock start, ms since the Unix epoch (2026-01-01 UTC)"
    )


class ExperimentConfig(StrictModel):
    data: DataConfig = Field(default_factory=DataConfig)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=PopularityConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    seed: int = 42


# -- service --------------------------------------------------------------------------------------
ApiScope = Literal["read", "write", "admin"]
_ALL_SCOPES: tuple[ApiScope, ...] = ("read", "write", "admin")


class ApiKeyConfig(StrictModel):
    """One API key and what it may do (clients send it in the ``X-API-Key`` header).

    ``read``: recommendation routes when `ServiceSettings.read_requires_key` is set;
    ``write``: events and catalogue; ``admin``: erase users, reload the model.
    """

    key: str = Field(min_length=16, repr=False, description="the secret; at least 16 characters")
    scopes: list[ApiScope] = Field(default_factory=lambda: list(_ALL_SCOPES))
    name: str = Field("key", description="a label for logs (the key itself is never logged)")


class ServiceSettings(StrictModel):
    """Options of `recpilot serve` (`recpilot.serving`), from a YAML/TOML file and CLI flags.

    There is no configuration through environment variables, except that the CLI reads one
    write/admin key from ``RECPILOT_API_KEY`` when ``--api-key`` is not given.
    """

    artifact: Path = Field(
        description="a model artefact directory, or a model registry root (versions/, current)"
    )
    db: str = Field(
        "sqlite:///recpilot.db",
        description="store URL: sqlite:///PATH (embedded, WAL) or postgresql+psycopg://...",
    )
    behaviour_artifact: Path | None = Field(
        None,
        description="a behaviour-probability model directory for POST /predict; None: the "
        "served artefact's behaviour/ subdirectory when it has one",
    )
    table_prefix: str = Field("", description="prefix of every store table name")
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="FULL: commits survive a power cut; NORMAL: only a process crash"
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_keys: list[ApiKeyConfig] = Field(
        default_factory=list, description="without keys, write and admin routes answer 401"
    )
    read_requires_key: bool = Field(
        False, description="recommendation and similar-item routes need a key with read scope"
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger requests get 413")
    max_batch_size: int = Field(
        1000, ge=1, description="events per POST /events and items per PUT /items"
    )
    max_k: int = Field(200, ge=1, description="longest recommendation list a client may ask for")
    default_k: int = Field(10, ge=1)
    max_request_history: int = Field(
        500, ge=1, description="longest history accepted in POST /recommendations"
    )
    history_limit: int = Field(
        200, ge=1, description="most recent stored events per user read as the history"
    )
    history_event_types: list[str] | None = Field(
        None, description="event types that form the history; None: all"
    )
    cache_users: int = Field(10_000, ge=0, description="users whose history is cached (LRU)")
    cache_ttl_seconds: float | None = Field(
        None,
        gt=0,
        description="expire cached histories after this long; set it when several replicas "
        "share one store (each replica only invalidates on the events it receives)",
    )
    catalogue_refresh_seconds: float = Field(
        5.0, ge=0, description="how often catalogue changes made by other replicas are read"
    )
    popular_window_hours: float = Field(
        168.0, gt=0, description="'popular now' counts events of this period"
    )
    popular_refresh_seconds: float = Field(30.0, ge=0)
    new_item_slots: int = Field(
        1, ge=0, description="list positions given to catalogue items the model does not know yet"
    )
    new_item_hours: float = Field(72.0, gt=0, description="how long an added item counts as new")
    text_encoder: str | None = Field(
        "all-MiniLM-L6-v2",
        description="encoder of item text for models that read it (hybrid SASRec/HSTU, "
        "text-kNN): PUT /items with a title/text makes a new item recommendable at once; must "
        "be the encoder the model was trained with ('hashing-v1-<dim>' for tests); None: off",
    )
    ann: Literal["auto", "on", "off"] = Field(
        "auto",
        description="approximate nearest-neighbour candidate retrieval (faiss HNSW) for models "
        "whose scores are inner products (sequence models, ALS): auto: for catalogues of at "
        "least ann_min_items; on: always; off: score every item",
    )
    ann_min_items: int = Field(200_000, ge=1, description="catalogue size where auto turns on")
    ann_candidates: int = Field(
        500, ge=1, description="items fetched from the index per request before filtering"
    )
    ann_ef_search: int = Field(
        1000,
        ge=1,
        description="HNSW search list length (higher: better recall, slower; at least "
        "ann_candidates is used)",
    )
    reason_history_items: int = Field(
        10, ge=1, description="most recent distinct history items considered for reasons"
    )
    log_impressions: bool = True
    impression_flush_seconds: float = Field(1.0, gt=0)
    score_cache_mb: float = Field(
        64.0,
        ge=0,
        description="memory for recent users' score rows, reused while a user's history is "
        "unchanged (a repeated request skips the model pass; the user's next event makes the "
        "next request compute afresh); 0: off",
    )
    torch_threads: int | None = Field(
        1,
        ge=1,
        description="`recpilot serve`: torch CPU threads per process; 1 suits a server whose "
        "requests run concurrently (a request's model pass is small, and idle OpenMP threads "
        "spin on the cores the other requests need); None: torch's default",
    )
    ui: bool = Field(
        True,
        description="serve the web UI at /ui (it holds no key: the user types one, kept in "
        "the browser tab only)",
    )
    policies: Path | None = Field(
        None,
        description="guidance policy file (YAML/TOML, see recpilot.guide.policy); requests pick "
        "one with policy=NAME; re-read when it changes. None: the model's own order",
    )
    policies_check_seconds: float = Field(
        1.0, ge=0, description="how often the policy file's modification time is checked"
    )


def load_service_settings(path: str | Path | None = None, **overrides: Any) -> ServiceSettings:
    """Service settings from a YAML/TOML file (optional), with explicit overrides on top.

    Args:
        path: a file whose top level (or ``service`` section) holds `ServiceSettings` fields.
        overrides: fields set explicitly (CLI flags); None values are ignored.
    """
    raw: dict[str, Any] = read_config_file(path) if path is not None else {}
    if isinstance(raw.get("service"), dict):
        raw = raw["service"]
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServiceSettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, str(path or "options"))) from exc


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML (.yaml/.yml) or TOML (.toml) file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            raw = yaml.safe_load(text) or {}
        elif path.suffix == ".toml":
            raw = tomllib.loads(text)
        else:
            raise ConfigError(f"config file {path}: expected a .yaml, .yml or .toml file")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be parsed: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return raw


def load_config(path: str | Path | None = None, **overrides: Any) -> ExperimentConfig:
    """Load an `ExperimentConfig` from a file (optional) with top-level section overrides.

    Args:
        path: a YAML or TOML file, or None for defaults.
        overrides: sections (``model={...}``, ``data={...}``) merged over the file's values.
    """
    raw: dict[str, Any] = read_config_file(path) if path is not None else {}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, str(path or "options"))) from exc


# -- behaviour probability ------------------------------------------------------------------------
class LogisticBehaviourConfig(StrictModel):
    """Logistic regression on the engineered features (standardised), one per behaviour."""

    name: Literal["logistic"] = "logistic"
    c: float = Field(1.0, gt=0, description="inverse L2 strength (scikit-learn's C)")
    max_iter: int = Field(1000, ge=1)


class LightGBMBehaviourConfig(StrictModel):
    """Gradient-boosted trees (LightGBM) on the engineered features, one per behaviour."""

    name: Literal["lightgbm"] = "lightgbm"
    n_estimators: int = Field(1000, ge=1, description="most boosting rounds (early stopped)")
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(50, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    l2: float = Field(1.0, ge=0, description="lambda_l2")
    early_stopping_rounds: int = Field(50, ge=1, description="on the validation log-loss")
    threads: int = Field(2, ge=1)
    seed: int = 0


class BSTBehaviourConfig(StrictModel):
    """Behaviour Sequence Transformer (Chen et al. 2019, Alibaba), multi-task heads.

    The user's recent history (item, event type, time gap to the candidate) and the candidate
    item form one sequence; a Transformer encoder lets the candidate attend to the history;
    its output joins the embedded categorical and normalised numeric features in an MLP with
    one logit per behaviour.
    """

    name: Literal["bst"] = "bst"
    d_model: int = Field(32, ge=4)
    n_heads: int = Field(2, ge=1)
    n_layers: int = Field(1, ge=1)
    history_length: int = Field(30, ge=1, description="most recent history events read")
    gap_buckets: int = Field(28, ge=1, description="log2 buckets of the time gap in seconds")
    mlp: list[int] = Field(default_factory=lambda: [128, 64])
    dropout: float = Field(0.1, ge=0, lt=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(512, ge=1)
    epochs: int = Field(30, ge=1)
    patience: int = Field(3, ge=1, description="epochs without a better validation log-loss")
    threads: int | None = Field(
        1, ge=1, description="torch CPU threads (None: torch's default; 1 is fastest on a busy box)"
    )
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:0 ...")
    item_init: Path | None = Field(
        None,
        description="a trained sequential-model artefact (SASRec, BERT4Rec, HSTU) whose item "
        "embeddings initialise the item table (same d_model; ids matched by external id)",
    )
    seed: int = 0


BehaviourModelConfig = Annotated[
    LogisticBehaviourConfig | LightGBMBehaviourConfig | BSTBehaviourConfig,
    Field(discriminator="name"),
]


class BehaviourDataConfig(StrictModel):
    """How labelled (user, item, time) examples are built from an event log."""

    labels: Literal["auto", "impressions", "rating", "sampled"] = Field(
        "auto",
        description="impressions: exposure events (view/impression) are examples and later "
        "clicks/carts/purchases of the same item their labels; rating: every rating is an "
        "example labelled value >= rating_threshold; sampled: events are positives and "
        "random unseen items at the same time negatives; auto: impressions when the log has "
        "exposure events, else rating when it has ratings, else sampled",
    )
    behaviours: list[str] | None = Field(
        None, description="impressions/sampled: event types to predict; None: those present"
    )
    exposure_event_types: list[str] = Field(default_factory=lambda: ["view", "impression"])
    rating_threshold: float = Field(4.0, description="rating labels: positive when value >= this")
    negatives_per_positive: int = Field(4, ge=1, description="sampled labels: negatives drawn")
    negative_rate: float = Field(
        1.0,
        gt=0,
        le=1,
        description="keep this share of negative examples (downsampling; recorded and "
        "corrected for in the probabilities)",
    )
    validation_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _fractions(self) -> BehaviourDataConfig:
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError(
                "validation_fraction + test_fraction must be < 1, got "
                f"{self.validation_fraction} + {self.test_fraction}"
            )
        return self


class BehaviourConfig(StrictModel):
    """The behaviour-probability task: data, model, calibration and report options."""

    data: BehaviourDataConfig = Field(default_factory=BehaviourDataConfig)
    model: BehaviourModelConfig = Field(default_factory=BSTBehaviourConfig)
    calibration: Literal["none", "platt", "isotonic"] = Field(
        "platt",
        description="fitted on the validation period's predictions; platt keeps the ranking "
        "(AUC unchanged), isotonic is more flexible but ties scores",
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="for accuracy, precision, recall, F1")
    ece_bins: int = Field(15, ge=1)
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples for 95% CIs (0: none)")
    seed: int = 0
