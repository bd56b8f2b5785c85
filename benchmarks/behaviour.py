"""Behaviour probability: BST vs LightGBM vs logistic regression (issue 5).

- **Simulator** (impressions: views with their clicks, carts, purchases): the test period is
  scored by every model, by the simulator's true probabilities (``bayes-optimal``: a
  clairvoyant oracle that reads each user's latent state) and by the Bayes-optimal predictor
  given the observable history (``bayes-optimal (observable history)``: the posterior
  predictive of the simulator's own model, a particle filter per user,
  `recpilot.behaviour.oracle`), with a particle-count stability check on a subset of users.
- **ml-100k, ml-latest-small**: "will the user rate this movie >= 4", every rating an example,
  history = the user's earlier ratings.

Protocol: one global time split of the examples (70% train, 15% validation, 15% test by
timestamp); features read only the past; early stopping and Platt calibration on validation;
the test period is read once. 95% intervals: paired percentile bootstrap over test examples
(the same resamples for every model), also for the BST − LightGBM difference.

    nice -n 10 python benchmarks/behaviour.py --part sim        # one part per process
    nice -n 10 python benchmarks/behaviour.py --part ml-100k
    nice -n 10 python benchmarks/behaviour.py --part ml-latest-small
    python benchmarks/behaviour.py --render                     # section from saved results

Each part saves ``runs/behaviour/PART.json``; every run rewrites the BENCHMARKS.md section
from the parts saved so far.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from typing import Any

os.environ.setdefault("RECPILOT_PROGRESS", "0")

from _common import (
    REPO,
    data_dir,
    git_commit,
    machine,
    peak_rss_mb,
    replace_section,
    today,
    versions,
)

from recpilot.behaviour.task import BAYES, BAYES_OBSERVABLE, run_behaviour_task
from recpilot.config import (
    BehaviourConfig,
    BehaviourDataConfig,
    BSTBehaviourConfig,
    LightGBMBehaviourConfig,
    LogisticBehaviourConfig,
    SimulatorConfig,
)

RUNS = REPO / "runs" / "behaviour"
PARTS = ("sim", "sim-long", "ml-100k", "ml-latest-small")
SIM = SimulatorConfig(n_users=5000, n_items=500, seed=0)
#: Diagnostic: long, stable histories (20 sessions a user, no taste drift), where the
#: simulator's latent taste can be read from behaviour; the default drifts every session.
SIM_LONG = SimulatorConfig(
    n_users=1500, n_items=500, sessions_per_user=20.0, taste_drift=0.0, seed=0
)
SEED = 0
#: Particles of the observable-history Bayes predictor, and the stability check: the same
#: predictor with twice the particles (and another seed) on this many random test users.
PARTICLES = 1000
STABILITY_USERS = 300


def models(part: str) -> list[Any]:
    bst = BSTBehaviourConfig(
        d_model=32,
        history_length=20 if part.startswith("sim") else 30,
        epochs=8,
        patience=3,
        dropout=0.2,
        batch_size=512,
        lr=2e-3,
        seed=SEED,
    )
    # the classical baselines get a small grid each, chosen on validation log-loss
    logistic = [LogisticBehaviourConfig(c=c) for c in (0.1, 1.0, 10.0)]
    lightgbm = [
        LightGBMBehaviourConfig(
            threads=1, seed=SEED, num_leaves=leaves, min_child_samples=child, learning_rate=0.05
        )
        for leaves, child in ((15, 100), (31, 50), (63, 20), (127, 200))
    ]
    return [logistic, lightgbm, bst]


def run_part(part: str, bootstrap: int) -> dict[str, Any]:
    start = time.perf_counter()
    config = BehaviourConfig(
        data=BehaviourDataConfig(seed=SEED), calibration="platt", bootstrap=bootstrap, seed=SEED
    )
    out_dir = RUNS / f"report-{part}"
    if part.startswith("sim"):
        from recpilot.behaviour.dataset import build_dataset
        from recpilot.data.simulator import Simulator

        sim_cfg = SIM if part == "sim" else SIM_LONG
        simulator = Simulator(sim_cfg)
        sim = simulator.generate()
        data = build_dataset(sim.log, config.data)
        observable, pf_info = observable_bayes(simulator, sim.truth, data)
        results = run_behaviour_task(
            data,
            config,
            models(part),
            out_dir,
            reference="bst",
            oracle=sim.truth,
            observable_oracle=observable,
            title="Behaviour probability: simulator",
        )
        results["simulator"] = sim_cfg.model_dump()
        results["observable_bayes"] = pf_info
    else:
        from recpilot.data.readers import read_dataset

        fmt = "movielens-100k" if part == "ml-100k" else "movielens-latest"
        log = read_dataset(data_dir() / part, fmt)
        results = run_behaviour_task(
            log,
            config,
            models(part),
            out_dir,
            reference="bst",
            title=f"Behaviour probability: {part} (rating >= 4)",
        )
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    results["peak_rss_mb"] = round(peak_rss_mb(), 0)
    results["machine"] = machine()
    results["versions"] = versions()
    results["commit"] = git_commit()
    results["date"] = today()
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / f"{part}.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def observable_bayes(simulator: Any, truth: Any, data: Any) -> tuple[Any, dict[str, Any]]:
    """The observable-history Bayes predictions of every test user's views, and a stability
    check: twice the particles (another seed) on a random subset of the test users."""
    import numpy as np

    from recpilot.behaviour.oracle import ParticleFilterConfig, observable_bayes_predictions
    from recpilot.behaviour.task import simulator_truth
    from recpilot.data.simulator import log_loss, roc_auc

    test = data.rows("test")
    test_user_ids = np.asarray(data.users.lookup(data.user[test]), dtype=np.int64)
    users = np.unique(test_user_ids)
    start = time.perf_counter()
    pred = observable_bayes_predictions(
        simulator, truth, ParticleFilterConfig(n_particles=PARTICLES, seed=SEED), users=users
    )
    seconds = round(time.perf_counter() - start, 1)
    subset = np.random.default_rng(SEED).choice(
        users, size=min(STABILITY_USERS, len(users)), replace=False
    )
    start = time.perf_counter()
    doubled = observable_bayes_predictions(
        simulator,
        truth,
        ParticleFilterConfig(n_particles=2 * PARTICLES, seed=SEED + 1),
        users=subset,
    )
    stability_seconds = round(time.perf_counter() - start, 1)
    rows = test[np.isin(test_user_ids, subset)]
    base, more = simulator_truth(data, pred, rows), simulator_truth(data, doubled, rows)
    labels = dict(zip(data.behaviours, data.labels[rows].T, strict=True))
    stability: dict[str, Any] = {}
    for b in base:
        y = labels[b]
        stability[b] = {
            "auc": [roc_auc(y, base[b]), roc_auc(y, more[b])],
            "log_loss": [log_loss(y, base[b]), log_loss(y, more[b])],
            "mean_abs_diff": float(np.mean(np.abs(base[b] - more[b]))),
            "max_abs_diff": float(np.max(np.abs(base[b] - more[b]))),
        }
    info = {
        "particles": PARTICLES,
        "seconds": seconds,
        "users": len(users),
        "stability": {
            "particles": 2 * PARTICLES,
            "users": len(subset),
            "test_examples": len(rows),
            "seconds": stability_seconds,
            "by_behaviour": stability,
        },
    }
    return pred, info


def _f(x: float, d: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def _ci(ci: Any) -> str:
    if not ci:
        return ""
    return f"[{_f(ci[0])}, {_f(ci[1])}]"


def _span(values: list[float]) -> str:
    """``lo–hi`` at three decimals, or one number when they print the same."""
    lo, hi = _f(min(values), 3), _f(max(values), 3)
    return lo if lo == hi else f"{lo}–{hi}"


def _gaps(res: dict[str, Any], oracle: str) -> dict[str, float]:
    """BST's AUC gap to an oracle row, per behaviour (behaviours that have the row)."""
    return {
        b: m[oracle]["auc"] - m["bst"]["auc"]
        for b, m in res["metrics"].items()
        if oracle in m and "bst" in m
    }


def _verdicts(parts: dict[str, dict[str, Any]]) -> list[str]:
    """The issue's targets, each with the measured numbers that decide it."""
    out = ["**Targets** (from the tables below):", ""]
    for part in ("sim", "sim-long"):
        res = parts.get(part)
        if res is None:
            continue
        label = "default simulator" if part == "sim" else "long-history diagnostic simulator"
        for oracle, what in (
            (BAYES, "clairvoyant Bayes-optimal (true probabilities)"),
            (BAYES_OBSERVABLE, "Bayes-optimal given the observable history"),
        ):
            gaps = _gaps(res, oracle)
            if not gaps:
                continue
            worst = max(gaps.values())
            text = ", ".join(f"{b} {_f(g, 3)}" for b, g in gaps.items())
            out.append(
                f"- {label}: BST AUC gap to the {what}: {text} → within 0.01: "
                f"**{'met' if worst <= 0.01 else 'not met'}**."
            )
        eces = ", ".join(f"{b} {_f(m['bst']['ece'], 3)}" for b, m in res["metrics"].items())
        worst_ece = max(m["bst"]["ece"] for m in res["metrics"].values())
        out.append(
            f"- {label}: BST ECE {eces} → ≤ 0.02: **{'met' if worst_ece <= 0.02 else 'not met'}**."
        )
    for part in ("ml-100k", "ml-latest-small"):
        res = parts.get(part)
        if res is None:
            continue
        ci = res["ci"].get("like", {})
        wins = []
        for other in ("lightgbm", "logistic"):
            d = ci.get(other, {})
            # intervals of other − bst: BST wins when AUC diff < 0 and log-loss diff > 0
            wins.append(bool(d) and d["auc_diff"][1] < 0 and d["log_loss_diff"][0] > 0)
        out.append(
            f"- {part}: BST beats LightGBM and logistic regression on AUC and log-loss with "
            f"95% paired CIs excluding 0: **{'met' if all(wins) else 'not met'}**."
        )
    out.append("")
    out.append(
        "Two Bayes rows on the simulator. `bayes-optimal` scores each view with its *true* "
        "probability, which depends on latent state no model observes (the user's "
        "current-session category taste after its random-walk drift, the personal taste "
        "vector): a clairvoyant oracle, kept as the ceiling of the simulated world. `bayes-"
        "optimal (observable history)` is the best any model can do from the log: the "
        "posterior predictive P(behaviour | the viewed item, the user's earlier views, clicks, "
        "carts, purchases and sessions, the user's segment) under the simulator's own "
        "generative model, computed by a particle filter per user "
        "(`recpilot.behaviour.oracle`). It treats the world's global parameters (item latent "
        "vectors, popularity, prices, click qualities, successor chains, funnel coefficients) "
        "as known, which a model has to learn from the log; so it is, up to particle-filter "
        "error, an upper bound on what a model can reach here, and the issue's 'within 0.01 "
        "AUC of the Bayes-optimal value' is met or not against it as stated above."
    )
    out.append("")
    for part in ("sim", "sim-long"):
        res = parts.get(part)
        clair, observable = (_gaps(res, o) if res else {} for o in (BAYES, BAYES_OBSERVABLE))
        if not observable:
            continue
        hidden = [clair[b] - observable[b] for b in observable if b in clair]
        label = "Default simulator" if part == "sim" else "Long-history diagnostic"
        line = (
            f"{label}: the observable-history predictor sits {_span(hidden)} AUC below the "
            "clairvoyant oracle (what the log cannot tell), the BST "
            f"{_span(list(observable.values()))} below the observable-history predictor (the "
            "modelling gap; part of it may be the cost of learning the items' parameters from "
            "a finite log, which the predictor is given)."
        )
        stability = res.get("observable_bayes", {}).get("stability", {}) if res else {}
        moves = [v["auc"][1] - v["auc"][0] for v in stability.get("by_behaviour", {}).values()]
        if moves:
            line += (
                f" Doubling the particles moved its AUC by {_f(min(moves), 4)} to "
                f"{_f(max(moves), 4)} on the stability subset; an approximate posterior "
                "scores worse than the exact one in expectation (log-loss is a proper scoring "
                "rule), so filter error, if anything, shrinks the measured modelling gap."
            )
        out.append(line)
        out.append("")
    return out


def render(parts: dict[str, dict[str, Any]]) -> str:
    md = ["## Behaviour probability", ""]
    md.append(
        "Issue 5: calibrated P(click / cart / purchase | view) on the simulator and "
        "P(rating ≥ 4) on MovieLens. Global time split of the examples (70/15/15 % by "
        "timestamp); features read only earlier events; early stopping and Platt scaling on "
        "the validation period; the test period read once. AUC = pooled ROC AUC, user AUC = "
        "mean per-user AUC over users with both classes, ECE with 15 bins, accuracy/F1 at 0.5. "
        "95% CIs: paired percentile bootstrap over test examples; Δ = BST − baseline with its "
        "paired CI (negative Δ log-loss: BST better). Command: `nice -n 10 python benchmarks/behaviour.py --part PART` "
        "(one process per part, seed 0)."
    )
    md.append("")
    any_part = next(iter(parts.values()), None)
    if any_part:
        md.append(
            f"Machine: {any_part['machine']}. Versions: {any_part['versions']}. "
            f"Commit {any_part['commit']}, {any_part['date']}."
        )
        md.append("")
    md += _verdicts(parts)
    for part in PARTS:
        res = parts.get(part)
        if res is None:
            continue
        data = res["data"]
        title = {
            "sim": "Simulator (default dynamics)",
            "sim-long": "Simulator, diagnostic: long histories, no taste drift",
        }.get(part, f"{part}: rating ≥ 4")
        md.append(f"### {title}")
        md.append("")
        if part.startswith("sim"):
            sim = res.get("simulator", {})
            md.append(
                f"Simulator: {sim.get('n_users')} users, {sim.get('n_items')} items, "
                f"{sim.get('sessions_per_user')} sessions a user, taste drift "
                f"{sim.get('taste_drift')}, seed "
                f"{sim.get('seed')}; {data['n_examples']:,} views (train {data['n_train']:,}, "
                f"validation {data['n_validation']:,}, test {data['n_test']:,})."
            )
        else:
            md.append(
                f"{data['n_examples']:,} ratings (train {data['n_train']:,}, validation "
                f"{data['n_validation']:,}, test {data['n_test']:,}); test positive rate "
                f"{_f(data['positive_rate_test']['like'], 3)}."
            )
        md.append(
            f"Fit seconds: {', '.join(f'{k} {v}' for k, v in res['fit_seconds'].items())}; "
            f"wall {res['wall_seconds']} s, peak RSS {res['peak_rss_mb']:.0f} MiB."
        )
        chosen = []
        for name, cfg in res.get("models", {}).items():
            if name == "logistic" and "logistic" in res.get("selection", {}):
                chosen.append(f"logistic C={cfg['c']}")
            elif name == "lightgbm" and "lightgbm" in res.get("selection", {}):
                chosen.append(
                    f"LightGBM num_leaves={cfg['num_leaves']}, "
                    f"min_child_samples={cfg['min_child_samples']}"
                )
        if chosen:
            md.append(f"Chosen on validation log-loss from small grids: {'; '.join(chosen)}.")
        pf = res.get("observable_bayes")
        if pf:
            st = pf["stability"]
            checks = "; ".join(
                f"{b} AUC {_f(v['auc'][0])} vs {_f(v['auc'][1])}, log-loss "
                f"{_f(v['log_loss'][0])} vs {_f(v['log_loss'][1])}, mean |Δp| "
                f"{_f(v['mean_abs_diff'])}"
                for b, v in st["by_behaviour"].items()
            )
            md.append(
                f"Observable-history Bayes: particle filter, {pf['particles']} particles per "
                f"user, {pf['users']:,} test users ({pf['seconds']} s). Stability, "
                f"{pf['particles']} vs {st['particles']} particles (other seed) on "
                f"{st['users']} random test users ({st['test_examples']:,} test views): "
                f"{checks}."
            )
        md.append("")
        md.append(
            "| behaviour | model | AUC | AUC 95% CI | user AUC | log-loss | log-loss 95% CI "
            "| ECE | accuracy | F1 |"
        )
        md.append("|---|---|---|---|---|---|---|---|---|---|")
        for behaviour, by_model in res["metrics"].items():
            cis = res["ci"].get(behaviour, {})
            for model, m in by_model.items():
                ci = cis.get(model, {})
                md.append(
                    f"| {behaviour} | {model} | {_f(m['auc'])} | {_ci(ci.get('auc'))} | "
                    f"{_f(m['user_auc'])} | {_f(m['log_loss'])} | {_ci(ci.get('log_loss'))} | "
                    f"{_f(m['ece'])} | {_f(m['accuracy'])} | {_f(m['f1'])} |"
                )
        md.append("")
        lines = []
        for behaviour, by_model in res["metrics"].items():
            cis = res["ci"].get(behaviour, {})
            bst = by_model.get("bst")
            if bst is None:
                continue
            parts_txt = [f"**{behaviour}**:"]
            for other, label in (("lightgbm", "LightGBM"), ("logistic", "logistic")):
                if other not in by_model:
                    continue
                # the CIs are of other - bst (reference bst): flipped to bst - other
                d = cis.get(other, {})
                auc_d, ll_d = d.get("auc_diff"), d.get("log_loss_diff")
                if auc_d and ll_d:
                    parts_txt.append(
                        f"BST − {label}: Δ AUC {_f(bst['auc'] - by_model[other]['auc'])} "
                        f"[{_f(-auc_d[1])}, {_f(-auc_d[0])}], Δ log-loss "
                        f"{_f(bst['log_loss'] - by_model[other]['log_loss'])} "
                        f"[{_f(-ll_d[1])}, {_f(-ll_d[0])}]"
                    )
            for oracle, label in ((BAYES, "clairvoyant"), (BAYES_OBSERVABLE, "observable-history")):
                if oracle in by_model:
                    gap = by_model[oracle]["auc"] - bst["auc"]
                    parts_txt.append(
                        f"BST AUC gap to {label} Bayes-optimal {_f(gap)} (target ≤ 0.01: "
                        f"{'met' if gap <= 0.01 else 'not met'})"
                    )
            if BAYES in by_model:
                parts_txt.append(
                    f"BST ECE {_f(bst['ece'])} "
                    f"(target ≤ 0.02: {'met' if bst['ece'] <= 0.02 else 'not met'})"
                )
            lines.append("- " + "; ".join(parts_txt[:1]) + " " + "; ".join(parts_txt[1:]))
        md += lines
        md.append("")
    return "\n".join(md)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=PARTS, action="append", default=[])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--render", action="store_true", help="only rewrite the section")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for part in args.part:
        res = run_part(part, args.bootstrap)
        print(
            json.dumps(
                {"part": part, "metrics": res["metrics"], "fit": res["fit_seconds"]},
                indent=1,
                default=str,
            )
        )
    saved = {
        p: json.loads((RUNS / f"{p}.json").read_text())
        for p in PARTS
        if (RUNS / f"{p}.json").is_file()
    }
    text = render(saved)
    print(text)
    if not args.no_write and saved:
        replace_section(REPO / "BENCHMARKS.md", "behaviour", text)


if __name__ == "__main__":
    main()
