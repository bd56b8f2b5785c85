"""Cold start (issue 6): cold items and new users on ML-latest-small and ML-100k.

Protocol: one global temporal split per dataset (the last 10% of events by time = test, the
10% before = validation). The models fit on the training period only; every sequence model
early-stops on validation NDCG@10 (all targets), and the hybrid's ID-dropout is chosen on
validation NDCG@10 of cold-item targets; the test split is read once, at the end.

- Cold items: items with no training event (first interaction at or after the validation
  cut-off). Test targets are split into cold and warm; Recall@10 / NDCG@10 are computed over
  the users that have at least one target of the kind, ranking the whole catalogue.
- New users: users whose first event is at or after the validation cut-off (never seen in
  training); for n in (1, 2, 5), the history is their first n events and the target their
  next distinct item (NDCG@10, HR@10), against popularity.

Item text: title, genres and (ML-latest-small) tags from the item files, encoded by the
shipped all-MiniLM-L6-v2 (cached in runs/text-cache). Models: popularity, text-only kNN,
SASRec with ID embeddings only, and hybrid SASRec (ID + projected text, ID-dropout).

    nice -n 15 python benchmarks/cold_start.py --out runs/cold-start          # both datasets
    nice -n 15 python benchmarks/cold_start.py --datasets ml-100k --out runs/cold-start  # one
    nice -n 15 python benchmarks/cold_start.py --smoke --out /tmp/cold-smoke  # 2 epochs
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import data_dir, git_commit, machine, replace_section, today, versions  # noqa: E402

from recpilot.config import EvaluationConfig, PreprocessConfig, SASRecConfig  # noqa: E402
from recpilot.content import MiniLMEncoder, catalogue_vectors  # noqa: E402
from recpilot.content.recommender import TextKNNRecommender  # noqa: E402
from recpilot.content.text import NO_TIME, item_release_times  # noqa: E402
from recpilot.data.interactions import Interactions  # noqa: E402
from recpilot.data.preprocess import build_interactions  # noqa: E402
from recpilot.data.readers import read_dataset  # noqa: E402
from recpilot.data.split import EvalSet, temporal_split  # noqa: E402
from recpilot.evaluation import Evaluator  # noqa: E402
from recpilot.models.base import Recommender  # noqa: E402
from recpilot.models.popularity import PopularityRecommender  # noqa: E402
from recpilot.models.sequential import SASRecRecommender, first_seen_times  # noqa: E402

logger = logging.getLogger("cold_start")

DATASETS = {  # in this order: ML-100k fine-tunes the ML-latest-small hybrid (transfer)
    "ml-latest-small": ("movielens-latest", "ML-latest-small"),
    "ml-100k": ("movielens-100k", "ML-100k"),
}
SEED = 0
TRANSFER = "SASRec hybrid, pre-trained on ML-latest-small"
HYBRID = "SASRec hybrid (ID + text)"
HYBRID_BOOST = "SASRec hybrid + text-only boost"
FRESH = "SASRec hybrid + item age + text-only boost"
#: text-only boosts tried on validation (logits added to the items known from text alone)
BOOSTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
#: validation warm NDCG@10 the item-age model may lose against the ID-only model (selection)
WARM_TOLERANCE = 0.02
ID_DROPOUTS = (0.25, 0.5)
NEW_USER_LENGTHS = (1, 2, 5)


def sasrec_config(smoke: bool, **changes: Any) -> SASRecConfig:
    base: dict[str, Any] = {
        "max_len": 50,
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 1,
        "dropout": 0.2,
        "seed": SEED,
        "training": {
            # a fixed epoch budget (not minutes): the result does not depend on the machine's load
            "max_epochs": 2 if smoke else 12,
            "batch_size": 64,
            "learning_rate": 2e-3,
            "patience": 4,
            "show_progress": False,
        },
    }
    return SASRecConfig.model_validate({**base, **changes})


def restrict(eval_set: EvalSet, keep: np.ndarray, name: str) -> EvalSet:
    """The users of ``eval_set`` with their targets limited to items where ``keep`` is True."""
    rows, targets = [], []
    for b, t in enumerate(eval_set.targets):
        t = t[keep[t]]
        if len(t):
            rows.append(b)
            targets.append(t)
    idx = np.asarray(rows, dtype=np.int64)
    return EvalSet(
        name,
        eval_set.users[idx],
        tuple(eval_set.histories[i] for i in idx),
        tuple(targets),
        eval_set.cutoffs[idx],
        None if eval_set.history_times is None else tuple(eval_set.history_times[i] for i in idx),
    )


def new_user_set(data: Interactions, cutoff: int, n: int) -> EvalSet:
    """Users first seen at or after ``cutoff``: first ``n`` events → next distinct item."""
    ptr = data.user_ptr
    users, hists, targets, times = [], [], [], []
    for u in range(data.n_users):
        items = data.item_idx[ptr[u] : ptr[u + 1]]
        stamps = data.timestamp[ptr[u] : ptr[u + 1]]
        if len(items) <= n or stamps[0] < cutoff:
            continue
        hist = items[:n]
        rest = items[n:][~np.isin(items[n:], hist)]
        if len(rest):
            users.append(u)
            hists.append(hist)
            targets.append(rest[:1])
            times.append(stamps[:n])
    return EvalSet(
        f"new-users-{n}",
        np.asarray(users, dtype=np.int64),
        tuple(hists),
        tuple(targets),
        np.full(len(users), cutoff, dtype=np.int64),
        tuple(times),
    )


class Restricted(Recommender):
    """Scores of ``model`` with every item outside ``allowed`` pushed to the bottom: ranking
    among the cold items only (the usual cold-start protocol, besides the full catalogue)."""

    name = "restricted"
    config_class = SASRecConfig  # unused: never built from a config

    def __init__(self, model: Recommender, allowed: np.ndarray) -> None:
        self.model = model
        self.allowed = allowed
        self.config = model.config
        self.users_, self.items_ = model.users_, model.items_

    def _fit(self, data: Interactions) -> None:  # pragma: no cover - wraps a fitted model
        raise NotImplementedError

    def _score(self, query: Any) -> np.ndarray:
        scores = self.model.score(query)
        scores[:, ~self.allowed] = -1e9
        return scores

    def _state(self) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _set_state(self, state: dict[str, np.ndarray]) -> None:  # pragma: no cover
        raise NotImplementedError


def choose_boost(
    model: SASRecRecommender, val_cold: EvalSet, val_warm: EvalSet, id_val_warm: float
) -> dict[str, Any]:
    """Set ``model``'s text-only boost to the one with the best validation cold NDCG@10 (whole
    catalogue) among those keeping validation warm NDCG@10 within WARM_TOLERANCE of the ID-only
    model's (the smallest boost on ties; 0 when none qualifies). Returns the trace."""
    trace: dict[str, Any] = {}
    best = (-1.0, 0.0)
    for boost in BOOSTS:
        model.config = model.config.model_copy(update={"text_only_boost": boost})
        cold_ndcg = metrics_of(model, val_cold).get("NDCG@10", 0.0)
        warm_ndcg = metrics_of(model, val_warm).get("NDCG@10", 0.0)
        trace[str(boost)] = {"val_cold_NDCG@10": cold_ndcg, "val_warm_NDCG@10": warm_ndcg}
        if warm_ndcg >= (1 - WARM_TOLERANCE) * id_val_warm and cold_ndcg > best[0]:
            best = (cold_ndcg, boost)
    model.config = model.config.model_copy(update={"text_only_boost": best[1]})
    trace["chosen"] = best[1]
    logger.info("text-only boost %s: %s", best[1], json.dumps(trace))
    return trace


def metrics_of(model: Recommender, eval_set: EvalSet) -> dict[str, float]:
    if len(eval_set) == 0:
        return {}
    result = Evaluator(EvaluationConfig(ks=[10]), show_progress=False).evaluate(model, eval_set)
    out = {k: float(v) for k, v in result.metrics.items() if k in ("Recall@10", "NDCG@10", "HR@10")}
    low, high = result.ci.get("NDCG@10", (float("nan"), float("nan")))
    out["NDCG@10_ci"] = [float(low), float(high)]  # type: ignore[assignment]
    out["users"] = len(eval_set)
    return out


def run_dataset(name: str, smoke: bool, out: Path) -> dict[str, Any]:
    fmt, label = DATASETS[name]
    t0 = time.time()
    log = read_dataset(data_dir() / name, fmt)
    data, _ = build_interactions(log, PreprocessConfig(deduplicate="user_item"))
    split = temporal_split(data, test_fraction=0.1, validation_fraction=0.1)
    train = split.train
    t_val = int(split.validation.cutoffs[0])
    warm = train.item_counts() > 0
    cold = ~warm
    vectors = catalogue_vectors(data, MiniLMEncoder(), REPO / "runs" / "text-cache")
    n_text = int((np.abs(vectors).sum(axis=1) > 0).sum())
    logger.info("%s: %s; %d cold items; %d items with text", name, data, cold.sum(), n_text)

    val_cold = restrict(split.validation, cold, "validation-cold")
    val_warm = restrict(split.validation, warm, "validation-warm")
    sets = {
        "cold": restrict(split.test, cold, "test-cold"),
        "warm": restrict(split.test, warm, "test-warm"),
        "all": split.test,
    }
    models: dict[str, Recommender] = {}
    selection: dict[str, Any] = {}
    models["popularity"] = PopularityRecommender().fit(train)
    models["text-kNN"] = TextKNNRecommender().set_text_vectors(vectors).fit(train)
    fit_times: dict[str, float] = {}
    t = time.time()
    models["SASRec (ID only)"] = SASRecRecommender(sasrec_config(smoke)).fit(
        train, split.validation
    )
    fit_times["SASRec (ID only)"] = time.time() - t
    id_val_warm = metrics_of(models["SASRec (ID only)"], val_warm).get("NDCG@10", 0.0)
    selection["id_only_val_warm_NDCG@10"] = id_val_warm
    best: tuple[float, SASRecRecommender | None, float] = (-1.0, None, 0.0)
    for p in ID_DROPOUTS:
        t = time.time()
        cfg = sasrec_config(smoke, text_features=True, id_dropout=p)
        model = SASRecRecommender(cfg).set_text_vectors(vectors).fit(train, split.validation)
        elapsed = time.time() - t
        val = metrics_of(Restricted(model, cold), val_cold).get("NDCG@10", 0.0)
        val_all = metrics_of(model, split.validation).get("NDCG@10", 0.0)
        selection[f"id_dropout={p}"] = {"val_cold_NDCG@10": val, "val_NDCG@10": val_all}
        logger.info("%s hybrid id_dropout=%s: validation cold NDCG@10 %.4f", name, p, val)
        if val > best[0]:
            best = (val, model, elapsed)
    assert best[1] is not None
    models[HYBRID] = best[1]
    fit_times[HYBRID] = best[2]
    selection["chosen"] = best[1].config.id_dropout

    # the text-only boost (a scoring offset for items known from text alone) is chosen on
    # validation NDCG@10 of cold targets ranked against the whole catalogue, among the boosts
    # that keep validation warm NDCG@10 within WARM_TOLERANCE of the ID-only model's (the
    # issue's two targets, read on validation); no retraining
    boosted = copy.deepcopy(best[1])
    selection["hybrid_boost"] = choose_boost(boosted, val_cold, val_warm, id_val_warm)
    models[HYBRID_BOOST] = boosted
    # hybrid + item age (freshness: a learned bias on the candidate's age since its release,
    # or first event, at the query time; never-seen items scored from text in training as in
    # serving), with the hybrid's validation-chosen ID-dropout and its own boost
    t = time.time()
    cfg = sasrec_config(
        smoke, text_features=True, id_dropout=best[1].config.id_dropout, freshness=True
    )
    releases = item_release_times(data.item_table, data.items.ids.to_list())
    fresh = (
        SASRecRecommender(cfg)
        .set_text_vectors(vectors)
        .set_item_times(releases)
        .fit(train, split.validation)
    )
    fit_times[FRESH] = time.time() - t
    selection["item_age_boost"] = choose_boost(fresh, val_cold, val_warm, id_val_warm)
    selection["item_age_bias"] = [round(float(b), 3) for b in fresh.module_.freshness.bias]  # type: ignore[union-attr]
    selection["items_with_release_time"] = int((releases != NO_TIME).sum())
    # the test read: the model also knows when the items without a release time were first
    # seen in the events logged before the test period (what a service's event store knows;
    # nothing from the test period)
    observed = copy.deepcopy(fresh)
    observed.observe_items(np.arange(data.n_items), first_seen_times(split.train_validation))
    models[FRESH] = observed
    best[1].save(out / f"{name}-hybrid")
    pretrained_path = out / "ml-latest-small-hybrid"
    if name == "ml-100k" and pretrained_path.is_dir():
        # transfer: blocks, positions and text projection from ML-latest-small, fine-tuned here
        pretrained = Recommender.load(pretrained_path)
        assert isinstance(pretrained, SASRecRecommender)
        t = time.time()
        cfg = sasrec_config(smoke, text_features=True, id_dropout=best[1].config.id_dropout)
        tuned = SASRecRecommender(cfg).init_from(pretrained).set_text_vectors(vectors)
        models[TRANSFER] = tuned.fit(train, split.validation)
        fit_times[TRANSFER] = time.time() - t

    # the test split, read once
    results: dict[str, Any] = {}
    for model_name, model in models.items():
        results[model_name] = {kind: metrics_of(model, s) for kind, s in sets.items()}
        if model_name != "popularity":  # every cold item has count 0: its order would be ties
            results[model_name]["cold_among_cold"] = metrics_of(
                Restricted(model, cold), sets["cold"]
            )
        # new users arrive from the validation cut-off on: the item-age model reads them with
        # what it knew then (its first-seen times of the training period)
        reader = fresh if model_name == FRESH else model
        results[model_name]["new_users"] = {
            str(n): metrics_of(reader, new_user_set(data, t_val, n)) for n in NEW_USER_LENGTHS
        }
        logger.info("%s %s: %s", name, model_name, json.dumps(results[model_name]["cold"]))
    return {
        "dataset": name,
        "label": label,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_events": data.n_events,
        "n_cold_items": int(cold.sum()),
        "n_items_with_text": n_text,
        "selection": selection,
        "fit_seconds": fit_times,
        "results": results,
        "wall_seconds": time.time() - t0,
    }


def fmt_metric(m: dict[str, Any], key: str) -> str:
    return f"{m[key]:.4f}" if key in m else "–"


def targets(label: str, m: dict[str, Any], ido: dict[str, Any], txt: dict[str, Any]) -> str:
    """The issue's targets for model results ``m`` against the ID-only and text-kNN ones."""
    cc = "cold_among_cold"
    beats = m["cold"].get("NDCG@10", 0) > max(
        ido["cold"].get("NDCG@10", 0), txt["cold"].get("NDCG@10", 0)
    ) and m["cold"].get("Recall@10", 0) > max(
        ido["cold"].get("Recall@10", 0), txt["cold"].get("Recall@10", 0)
    )
    beats_cc = m[cc].get("NDCG@10", 0) > max(ido[cc].get("NDCG@10", 0), txt[cc].get("NDCG@10", 0))
    loss = 1 - m["warm"].get("NDCG@10", 0) / max(ido["warm"].get("NDCG@10", 1e-9), 1e-9)
    return (
        f"{label} beats ID-only and text-kNN on cold items (Recall@10 and NDCG@10): "
        f"**{'met' if beats else 'not met'}** (full catalogue), "
        f"**{'met' if beats_cc else 'not met'}** (NDCG@10 among cold items); warm "
        f"NDCG@10 change vs ID-only: {-loss:+.1%} (target: loss ≤ 2%): "
        f"**{'met' if loss <= 0.02 else 'not met'}**."
    )


def render(runs: list[dict[str, Any]], wall: float) -> str:
    lines = [
        "## Cold start",
        "",
        f"Run {today()} on {machine()}; {versions()}; commit {git_commit()}; seed {SEED}; "
        f"wall time {wall / 60:.1f} min. Reproduce: `nice -n 15 python benchmarks/cold_start.py "
        "--out runs/cold-start`.",
        "",
        "Global temporal split (last 10% of events = test, the 10% before = validation); models "
        "fit on the training period; SASRec runs early-stop on validation NDCG@10; the hybrid's "
        "ID-dropout is chosen on validation NDCG@10 of cold-item targets (ranked among cold items); "
        "the item-age hybrid (`freshness: true`: a learned bias on each candidate's log2 age at "
        "the query time, counted from its release year (from the title or release date), else its "
        "first event; items not seen before the query time are scored from text with a shared "
        "'new item' bias, in training as in serving) uses the same ID-dropout; the text-only "
        "boost (a logit added at scoring to items known from text alone, `text_only_boost`) is "
        "chosen per model on validation NDCG@10 of cold targets ranked against the whole "
        "catalogue, among the boosts that keep validation warm NDCG@10 within 2% of the ID-only "
        "model's; test read once. For the test read the item-age model also gets the first-seen "
        "time of items without a release year from the events logged before the test period "
        "(what a service's event store knows; nothing from the test period). Cold "
        "items: no event in the training period. Item text = title, genres and (ML-latest-small) "
        "tags from the item files, encoded by all-MiniLM-L6-v2 (384-d, offline). Full ranking, "
        "history excluded; each metric averages over the users with at least one target of the "
        "kind. Caveat: ML-latest-small's tags are a snapshot taken at the end of the data, so "
        "a cold item's tags may postdate the split (a mild leak that favours the text models).",
        "",
    ]
    for run in runs:
        res = run["results"]
        first = next(iter(res.values()))
        lines += [
            f"### {run['label']}: cold items",
            "",
            f"{run['n_events']:,} events, {run['n_users']:,} users, {run['n_items']:,} items "
            f"({run['n_cold_items']:,} cold); test users with a cold target: "
            f"{first['cold'].get('users', 0)}, with a warm target: {first['warm'].get('users', 0)}."
            f" Chosen on validation: hybrid ID-dropout {run['selection']['chosen']} (the item-age "
            "model uses the same); text-only boost "
            f"{run['selection'].get('hybrid_boost', {}).get('chosen', '–')} (hybrid), "
            f"{run['selection'].get('item_age_boost', {}).get('chosen', '–')} (hybrid + item "
            f"age). Items with a release year: {run['selection'].get('items_with_release_time', '–')}.",
            "",
            "Cold targets are ranked two ways: against the whole catalogue, and among the cold "
            "items only (the usual cold-start protocol: which new item will the user pick; "
            "popularity has no signal there, every cold item having no training event).",
            "",
            "| model | cold Recall@10 | cold NDCG@10 | cold-among-cold Recall@10 | "
            "cold-among-cold NDCG@10 | warm Recall@10 | warm NDCG@10 | all NDCG@10 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for model_name, r in res.items():
            cc = r.get("cold_among_cold", {})
            lines.append(
                f"| {model_name} | {fmt_metric(r['cold'], 'Recall@10')} | "
                f"{fmt_metric(r['cold'], 'NDCG@10')} | {fmt_metric(cc, 'Recall@10')} | "
                f"{fmt_metric(cc, 'NDCG@10')} | {fmt_metric(r['warm'], 'Recall@10')} | "
                f"{fmt_metric(r['warm'], 'NDCG@10')} | {fmt_metric(r['all'], 'NDCG@10')} |"
            )
        ido = res["SASRec (ID only)"]
        txt = res["text-kNN"]
        cc = "cold_among_cold"

        def ci(r: dict[str, Any]) -> str:
            low, high = r.get("NDCG@10_ci", (float("nan"), float("nan")))
            return f"[{low:.3f}, {high:.3f}]"

        names = {"hybrid": HYBRID, "hybrid + boost": HYBRID_BOOST, "item age": FRESH}
        shown = [(label, res[key]) for label, key in names.items() if key in res]
        lines += [
            "",
            "95% intervals of NDCG@10 (per-user normal): cold (full catalogue): "
            + ", ".join(f"{label} {ci(m['cold'])}" for label, m in shown)
            + f", text-kNN {ci(txt['cold'])}; cold-among-cold: "
            + ", ".join(f"{label} {ci(m[cc])}" for label, m in shown)
            + f", ID-only {ci(ido[cc])}, text-kNN {ci(txt[cc])}; warm: "
            + ", ".join(f"{label} {ci(m['warm'])}" for label, m in shown)
            + f", ID-only {ci(ido['warm'])}.",
            "",
            "Targets: "
            + " ".join(
                targets(
                    names[label],
                    m,
                    ido,
                    txt,
                )
                for label, m in shown
            ),
            "",
            f"### {run['label']}: new users (first event at or after the validation cut-off)",
            "",
            "| model | "
            + " | ".join(f"NDCG@10, {n} event{'s' if n > 1 else ''}" for n in NEW_USER_LENGTHS)
            + " |",
            "|---|" + "---|" * len(NEW_USER_LENGTHS),
        ]
        for model_name, r in res.items():
            cells = [fmt_metric(r["new_users"][str(n)], "NDCG@10") for n in NEW_USER_LENGTHS]
            lines.append(f"| {model_name} | " + " | ".join(cells) + " |")
        users = [first["new_users"][str(n)].get("users", 0) for n in NEW_USER_LENGTHS]
        lines += ["", f"Users per column: {', '.join(map(str, users))}.", ""]
    lines += [
        "Reading (of the run above; rewrite it with new numbers): against the whole catalogue "
        "the calibrated sequence models (ID only, hybrid) never put a cold item in the top 10: a "
        "cold item has no popularity signal and competes with every warm item carrying its ID "
        "embedding. The text-only boost changes that on ML-latest-small: cold NDCG@10 0.0173 / "
        "Recall@10 0.0077 against text-kNN's 0.0022 / 0.0009, warm +1.2% vs ID-only, every "
        "target met; on ML-100k validation allowed no boost (each one cost more than 2% of warm "
        "NDCG@10), so it stays the plain hybrid there. The item-age model puts cold items in "
        "the top 10 on both datasets (cold NDCG@10 0.0411, interval clear of text-kNN's, on "
        "ML-latest-small; 0.0244 on ML-100k, 55 users, interval from -0.007) and is the best "
        "model among cold items on both but the transfer row; on ML-100k it meets every target "
        "(warm +5.4%). On ML-latest-small it loses 8.3% warm NDCG@10 and fails new users: its "
        "boost (2.0) was chosen at the validation cut-off, when most cold items were not "
        "released yet (the 'new' bucket, weak), and at the test cut-off they are one to two "
        "years old, the age its learned bias favours most (-7.6, against -8.8 to -9.7 for "
        "films over four years old), so age bias plus boost push too many of them into every top "
        "10; the warm constraint held on validation (+0.2% vs ID-only) and not on test. No "
        "single validation-selected setting meets every target on both datasets. The old rows "
        "(same seeds) are reproduced exactly. New users: the hybrid personalises from the first "
        "event; it beats popularity at 1, 2 and 5 events on ML-100k, on ML-latest-small it is "
        "below popularity at 1 event, level at 2 and above at 5; it beats the ID-only model "
        "everywhere. Budget: 12 epochs at most per SASRec run (CPU, early stopping), so the "
        "sequence models are not tuned to convergence; the variants compare on equal terms.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "cold-start")
    parser.add_argument("--smoke", action="store_true", help="2 epochs, no BENCHMARKS.md")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the section from the saved JSON"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    runs = []
    for name in [] if args.render_only else args.datasets:
        if not (data_dir() / name).exists():
            logger.warning("skipping %s: not found under %s", name, data_dir())
            continue
        run = run_dataset(name, args.smoke, args.out)
        (args.out / f"{name}.json").write_text(json.dumps(run, indent=2))
    # the section shows every dataset run into this folder (one run per dataset is fine)
    for name in DATASETS:
        if (args.out / f"{name}.json").is_file():
            runs.append(json.loads((args.out / f"{name}.json").read_text()))
    wall = sum(r["wall_seconds"] for r in runs) if runs else time.time() - t0
    text = render(runs, wall)
    (args.out / "section.md").write_text(text)
    print(text)
    if not args.smoke and runs:
        replace_section(REPO / "BENCHMARKS.md", "cold-start", text)


if __name__ == "__main__":
    main()
