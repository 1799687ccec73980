"""The marketplace command's analysis, tables, files and plots.

The lift of the target group over the reference group per time bin, every arm at the end
against the truth, and the headline verdict; then the printed tables, ``lift.csv``,
``best.csv``, ``arms.csv``, ``results.json`` and three plots.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from api.services.report import report_csv
from simulations.marketplace.model import (
    COMMAND,
    EXPERT_CONFIGS,
    PARAMETER_NAMES,
    REFERENCE_CONFIG,
    MarketplaceResult,
    SearchResult,
    config_of,
)
from simulations.options import PROGRAM, command_line, parameters
from simulations.output import jsonable, percent, versions, weights_text, write_csv, write_json
from simulations.plotting import Curve, new_figure, plot_curves_with_bands, save_figure


@dataclass(frozen=True)
class BinRow:
    """One time bin of the lift table."""

    start_hour: float
    end_hour: float
    target_exposures: int
    target_contacts: int
    reference_exposures: int
    reference_contacts: int
    lift: float  # observed target rate / reference rate - 1
    lift_ci_low: float
    lift_ci_high: float
    expected_lift: float  # same ratio of the served configurations' true expected contacts
    best_arm_id: int  # by posterior mean at the end of the bin
    best_arm_true_rate: float
    trap_share: float  # share of target exposures served the view-maximiser


def lift_interval(
    target_contacts: float,
    target_exposures: float,
    reference_contacts: float,
    reference_exposures: float,
) -> tuple[float, float, float]:
    """Lift of the target rate over the reference rate with a 95% interval.

    The interval is the delta-method one on the log rate ratio, treating contacts as Poisson:
    ``exp(log(RR) +- 1.96 sqrt(1/c_t + 1/c_r)) - 1``; NaN when a group has no contact.
    """
    if min(target_contacts, reference_contacts, target_exposures, reference_exposures) <= 0:
        return math.nan, math.nan, math.nan
    ratio = (target_contacts / target_exposures) / (reference_contacts / reference_exposures)
    half = 1.96 * math.sqrt(1.0 / target_contacts + 1.0 / reference_contacts)
    return ratio - 1.0, ratio * math.exp(-half) - 1.0, ratio * math.exp(half) - 1.0


def bin_rows(result: MarketplaceResult) -> list[BinRow]:
    config, log = result.config, result.log
    ref = result.reference_arm_id
    rows = []
    per_bin = config.windows_per_bin
    for start in range(0, config.n_windows, per_bin):
        stop = min(start + per_bin, config.n_windows)
        totals = {"te": 0.0, "tc": 0.0, "re": 0.0, "rc": 0.0, "tx": 0.0, "rx": 0.0, "trap": 0.0}
        for w in range(start, stop):
            for arm_id, count in log.exposures[w].items():
                totals["re" if arm_id == ref else "te"] += count
                if arm_id == result.trap_arm_id:
                    totals["trap"] += count
            for arm_id, count in log.contacts[w].items():
                totals["rc" if arm_id == ref else "tc"] += count
            for arm_id, value in log.expected_contacts[w].items():
                totals["rx" if arm_id == ref else "tx"] += value
        lift, low, high = lift_interval(totals["tc"], totals["te"], totals["rc"], totals["re"])
        expected = (
            (totals["tx"] / totals["te"]) / (totals["rx"] / totals["re"]) - 1.0
            if min(totals["te"], totals["re"], totals["rx"]) > 0
            else math.nan
        )
        best = log.best_arm_ids[stop - 1]
        rows.append(
            BinRow(
                start_hour=start * config.tick_seconds / 3600,
                end_hour=stop * config.tick_seconds / 3600,
                target_exposures=int(totals["te"]),
                target_contacts=int(totals["tc"]),
                reference_exposures=int(totals["re"]),
                reference_contacts=int(totals["rc"]),
                lift=lift,
                lift_ci_low=low,
                lift_ci_high=high,
                expected_lift=expected,
                best_arm_id=best,
                best_arm_true_rate=result.arms[best].true_contacts if best in result.arms else 0,
                trap_share=totals["trap"] / totals["te"] if totals["te"] else math.nan,
            )
        )
    return rows


def arm_summary(result: MarketplaceResult) -> list[dict[str, Any]]:
    """Every arm at the end: truth, traffic, posterior; sorted by posterior mean."""
    log = result.log
    total_target = sum(
        c for w in log.exposures for a, c in w.items() if a != result.reference_arm_id
    )
    last_hour = max(1, round(3600 / result.config.tick_seconds))
    recent = log.exposures[-last_hour:]
    recent_target = sum(c for w in recent for a, c in w.items() if a != result.reference_arm_id)
    best_possible = result.trap.contact_maximiser.contacts
    rows = []
    for arm in result.final_arms:
        info = result.arms[arm["arm_id"]]
        served = sum(w.get(arm["arm_id"], 0) for w in log.exposures)
        served_recent = sum(w.get(arm["arm_id"], 0) for w in recent)
        reference = arm["origin"] == "reference"
        rows.append(
            {
                "arm_id": arm["arm_id"],
                "label": info.label,
                "origin": arm["origin"],
                "status": arm["status"],
                "generation": arm["generation"],
                "parent_ids": arm["parent_ids"],
                "config": arm["config"],
                "true_views_per_page_view": info.true_views,
                "true_contacts_per_page_view": info.true_contacts,
                "true_fraction_of_best_possible": info.true_contacts / best_possible,
                "exposures": served,
                "contacts": sum(w.get(arm["arm_id"], 0) for w in log.contacts),
                "clicks": sum(w.get(arm["arm_id"], 0) for w in log.clicks),
                "traffic_share": None if reference else served / max(total_target, 1),
                "traffic_share_last_hour": None
                if reference
                else served_recent / max(recent_target, 1),
                "alpha": arm["alpha"],
                "beta": arm["beta"],
                "posterior_mean": None
                if reference
                else arm["alpha"] / (arm["alpha"] + arm["beta"]),
            }
        )
    rows.sort(key=lambda r: -1.0 if r["posterior_mean"] is None else -r["posterior_mean"])
    return rows


@dataclass(frozen=True)
class Verdict:
    """The headline numbers."""

    best_arm_id: int
    best_arm_label: str
    best_arm_true_rate: float
    best_possible_rate: float
    reference_rate: float
    trap_rate: float
    best_found_fraction: float
    best_found_lift_over_reference: float
    best_possible_lift_over_reference: float
    overall_lift: float
    overall_lift_ci: tuple[float, float]
    last_bin_lift: float
    trap_reproduced: bool
    trap_views_gain: float
    trap_contacts_loss: float
    trap_avoided: bool
    trap_final_share: float
    trap_posterior_mean: float | None
    trap_status: str


def verdict(result: MarketplaceResult, bins: list[BinRow]) -> Verdict:
    arms = arm_summary(result)
    best = next(a for a in arms if a["arm_id"] == result.log.best_arm_ids[-1])
    trap = next(a for a in arms if a["arm_id"] == result.trap_arm_id)
    reference = result.arms[result.reference_arm_id].true_contacts
    best_possible = result.trap.contact_maximiser.contacts
    te = sum(b.target_exposures for b in bins)
    tc = sum(b.target_contacts for b in bins)
    re_ = sum(b.reference_exposures for b in bins)
    rc = sum(b.reference_contacts for b in bins)
    lift, low, high = lift_interval(tc, te, rc, re_)
    return Verdict(
        best_arm_id=best["arm_id"],
        best_arm_label=best["label"],
        best_arm_true_rate=best["true_contacts_per_page_view"],
        best_possible_rate=best_possible,
        reference_rate=reference,
        trap_rate=result.arms[result.trap_arm_id].true_contacts,
        best_found_fraction=best["true_contacts_per_page_view"] / best_possible,
        best_found_lift_over_reference=best["true_contacts_per_page_view"] / reference - 1,
        best_possible_lift_over_reference=best_possible / reference - 1,
        overall_lift=lift,
        overall_lift_ci=(low, high),
        last_bin_lift=bins[-1].lift,
        trap_reproduced=result.trap.reproduced,
        trap_views_gain=result.trap.views_gain,
        trap_contacts_loss=result.trap.contacts_loss,
        trap_avoided=best["arm_id"] != result.trap_arm_id,
        trap_final_share=float(trap["traffic_share_last_hour"] or 0.0),
        trap_posterior_mean=trap["posterior_mean"],
        trap_status=trap["status"],
    )


# --- the table and the files --------------------------------------------------------------


def format_table(result: MarketplaceResult) -> str:
    """The tables printed by the command."""
    config = result.config
    bins = bin_rows(result)
    v = verdict(result, bins)
    trap = result.trap
    evolve = (
        "on"
        if config.evolve and result.evolution_available
        else ("unavailable in this build" if config.evolve else "off")
    )
    lines = [
        f"Marketplace: {config.hours:g} simulated hours, "
        f"{config.views_per_minute:g} page views/min, "
        f"{config.model.n_listings:,} listings, block of {config.model.block_size}, "
        f"seed {config.seed}",
        f"service layer in-process on SQLite; tick every {config.tick_seconds:g} s simulated "
        f"({result.ticks_applied} ticks), {config.mode} mode, reference share "
        f"{config.reference_share:g}, evolution {evolve}"
        + (f" every {config.evolve_minutes:g} min" if evolve == "on" else "")
        + f"; wall time {result.wall_time_s:.1f} s",
        "",
        "Lift of the target group over the reference group (contacts per page view)",
        f"{'hours':<11}{'target':>16}{'reference':>16}{'lift':>9}  {'95% CI':<18}"
        f"{'expected':>9}{'best arm':>10}{'its truth':>10}{'trap':>7}",
    ]
    for b in bins:
        interval = (
            f"[{percent(b.lift_ci_low)}, {percent(b.lift_ci_high)}]"
            if not math.isnan(b.lift_ci_low)
            else "n/a"
        )
        lines.append(
            f"{b.start_hour:>4.1f}-{b.end_hour:<5.1f}"
            f"{f'{b.target_contacts}/{b.target_exposures}':>16}"
            f"{f'{b.reference_contacts}/{b.reference_exposures}':>16}"
            f"{percent(b.lift):>9}  {interval:<18}{percent(b.expected_lift):>9}"
            f"{b.best_arm_id:>10}{b.best_arm_true_rate / v.best_possible_rate:>9.1%}"
            f"{percent(b.trap_share, signed=False):>7}"
        )
    lines += [
        "(target, reference: contacts/page views; expected: the same ratio of the served "
        "configurations' true rates;",
        " best arm: highest posterior mean at the end of the bin, its truth as a fraction of "
        "the best possible; trap: traffic share of the view-maximiser)",
        "",
        f"Overall lift {percent(v.overall_lift)} "
        f"[{percent(v.overall_lift_ci[0])}, {percent(v.overall_lift_ci[1])}], last bin "
        f"{percent(v.last_bin_lift)}",
        f"Best configuration found: arm {v.best_arm_id} ({v.best_arm_label}) "
        f"{weights_text(result.arms[v.best_arm_id].config, REFERENCE_CONFIG)}",
        f"  true contact rate {v.best_arm_true_rate:.4%} per page view = "
        f"{v.best_found_fraction:.1%} of the best possible {v.best_possible_rate:.4%} "
        f"({weights_text(config_of(trap.contact_maximiser.weights), REFERENCE_CONFIG)})",
        f"  lift over the reference ({v.reference_rate:.4%}): found "
        f"{percent(v.best_found_lift_over_reference)}, best possible "
        f"{percent(v.best_possible_lift_over_reference)}",
        "",
        "Views trap (exact expectations over all source listings)",
        f"  view-maximiser   "
        f"{weights_text(config_of(trap.view_maximiser.weights), REFERENCE_CONFIG)}: "
        f"views {trap.view_maximiser.views:.4f}, contacts {trap.view_maximiser.contacts:.4%}",
        f"  contact-maximiser "
        f"{weights_text(config_of(trap.contact_maximiser.weights), REFERENCE_CONFIG)}: "
        f"views {trap.contact_maximiser.views:.4f}, contacts {trap.contact_maximiser.contacts:.4%}",
        f"  the view-maximiser gets {percent(v.trap_views_gain)} views and "
        f"{percent(-v.trap_contacts_loss)} contacts: "
        + ("trap reproduced" if v.trap_reproduced else "TRAP NOT REPRODUCED"),
        f"  as arm {result.trap_arm_id}: status {v.trap_status}, traffic share in the last "
        f"hour {v.trap_final_share:.1%}, posterior mean "
        + ("n/a" if v.trap_posterior_mean is None else f"{v.trap_posterior_mean:.3f}")
        + f"; bandit's best arm is {'not ' if v.trap_avoided else ''}the view-maximiser",
        "",
        *scorecard_lines(result),
        "",
        "Arms at the end (sorted by posterior mean; truth = true contact rate / best possible)",
        f"{'arm':>4} {'label':<14}{'status':<8}{'truth':>7}{'views':>8}{'share':>7}"
        f"{'last h':>7}{'exposures':>10}{'contacts':>9}{'post. mean':>11}",
    ]
    for a in arm_summary(result):
        share = a["traffic_share"]
        recent = a["traffic_share_last_hour"]
        mean = a["posterior_mean"]
        lines.append(
            f"{a['arm_id']:>4} {a['label']:<14}{a['status']:<8}"
            f"{a['true_fraction_of_best_possible']:>7.1%}{a['true_views_per_page_view']:>8.4f}"
            f"{'-' if share is None else f'{share:.1%}':>7}"
            f"{'-' if recent is None else f'{recent:.1%}':>7}"
            f"{a['exposures']:>10,}{a['contacts']:>9,}"
            f"{'-' if mean is None else f'{mean:.3f}':>11}"
        )
    return "\n".join(lines)


def _label(result: MarketplaceResult, treatment: Any) -> str:
    if treatment == "bandit":
        return "bandit group"
    info = result.arms.get(int(treatment))
    return f"arm {treatment}" + ("" if info is None else f" ({info.label})")


def _interval(low: Any, high: Any) -> str:
    if low is None or high is None:
        return "n/a"
    return f"[{percent(float(low))}, {percent(float(high))}]"


def scorecard_lines(result: MarketplaceResult) -> list[str]:
    """The platform's own report (``GET .../report``) at the end of the run: every metric,
    the bandit group and each arm against the reference group, the guardrail's actions and
    the health checks."""
    report = result.report
    if not report:
        return []
    lines = [
        "Scorecard: the platform's report at the end (GET /v1/experiments/"
        f"{report.get('experiment', '')}/report), per page view against the reference group",
        f"{'metric':<9}{'treatment':<26}{'control':>9}{'treated':>9}{'effect':>9}  "
        f"{'95% CI':<19}{'always-valid 95%':<19}{'verdict':<8}",
    ]
    for row in report["rows"]:
        effect = row["effect"]
        lines.append(
            f"{row['metric']:<9}{_label(result, row['treatment']):<26}"
            f"{_rate(row['control_mean']):>9}{_rate(row['treatment_mean']):>9}"
            f"{'n/a' if effect is None else percent(effect):>9}  "
            f"{_interval(row['lower'], row['upper']):<19}"
            f"{_interval(row['lower_anytime'], row['upper_anytime']):<19}{row['verdict']:<8}"
        )
    guardrail = next((m for m in report["metrics"] if m["role"] == "guardrail"), None)
    if guardrail is not None:
        lines.append(
            f"Guardrail on {guardrail['event']} (may not drop more than "
            f"{guardrail['max_loss']:.0%}): "
            + ("no arm retired" if not result.guardrail_retired else "")
        )
        for arm_id, (hour, reason) in sorted(result.guardrail_retired.items()):
            lines.append(f"  retired {_label(result, arm_id)} at {hour:.2f} h: {reason}")
    if result.paused is not None:
        paused_at, why = result.paused
        lines.append(
            f"Circuit breaker: paused the experiment at {paused_at:.2f} h: "
            f"{why.get('message', why)}"
        )
    lines.append(
        "Health: " + "; ".join(f"{check['check']} {check['status']}" for check in report["health"])
    )
    return lines


def _rate(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"


def write_outputs(result: MarketplaceResult, out_dir: Path) -> list[Path]:
    """Write ``lift.csv``, ``best.csv``, ``arms.csv``, ``results.json``, the platform's
    report (``report.json``, ``scorecard.csv``) and three plots."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = result.config
    bins = bin_rows(result)
    v = verdict(result, bins)
    arms = arm_summary(result)

    lift = write_csv(
        out_dir / "lift.csv",
        ["start_hour", "end_hour", "target_exposures", "target_contacts",
         "reference_exposures", "reference_contacts", "lift", "lift_ci95_low",
         "lift_ci95_high", "expected_lift", "best_arm_id", "best_arm_true_rate",
         "trap_share", "seed"],
        ([*asdict(b).values(), config.seed] for b in bins),
    )  # fmt: skip

    hours = (np.arange(config.n_windows) + 1) * config.tick_seconds / 3600
    best_rates = np.array([result.arms[a].true_contacts for a in result.log.best_arm_ids])
    best = write_csv(
        out_dir / "best.csv",
        ["hour", "best_arm_id", "best_posterior_mean", "best_arm_true_rate",
         "best_possible_rate", "reference_rate", "active_arms", "seed"],
        (
            [f"{hour:.6f}", result.log.best_arm_ids[i], repr(result.log.best_means[i]),
             repr(float(best_rates[i])), repr(v.best_possible_rate), repr(v.reference_rate),
             result.log.active_counts[i], config.seed]
            for i, hour in enumerate(hours)
        ),
    )  # fmt: skip

    columns = [c for c in arms[0] if c not in ("config", "parent_ids")]
    arms_csv = write_csv(
        out_dir / "arms.csv",
        [*columns, *PARAMETER_NAMES, "parent_ids", "seed"],
        (
            [*(a[c] for c in columns), *(a["config"][n] for n in PARAMETER_NAMES),
             " ".join(str(p) for p in a["parent_ids"]), config.seed]
            for a in arms
        ),
    )  # fmt: skip

    document = {
        "command": f"{PROGRAM} {COMMAND}",
        "reproduce": command_line(COMMAND, config),
        "seed": config.seed,
        "parameters": parameters(config),
        "reference_config": REFERENCE_CONFIG,
        "expert_configs": list(EXPERT_CONFIGS),
        "evolution_available": result.evolution_available,
        "random_streams": "SeedSequence(seed).spawn(5): traffic, serving, ticks, arms, evolution",
        "versions": versions(),
        "wall_time_s": result.wall_time_s,
        "search_time_s": result.search_time_s,
        "ticks_applied": result.ticks_applied,
        "verdict": jsonable(asdict(v)),
        "views_trap": {
            "view_maximiser": _search_doc(result.trap.view_maximiser),
            "contact_maximiser": _search_doc(result.trap.contact_maximiser),
            "views_gain": result.trap.views_gain,
            "contacts_loss": result.trap.contacts_loss,
            "reproduced": result.trap.reproduced,
            "trap_arm_id": result.trap_arm_id,
        },
        "generations": [asdict(g) for g in result.generations],
        "guardrail_retired": {
            str(arm_id): {"hour": hour, "reason": reason}
            for arm_id, (hour, reason) in result.guardrail_retired.items()
        },
        "paused": None
        if result.paused is None
        else {"hour": result.paused[0], "reason": result.paused[1]},
        "bins": [jsonable(asdict(b)) for b in bins],
        "arms": jsonable(arms),
    }
    results = write_json(out_dir / "results.json", document)
    outputs = [lift, best, arms_csv, results]
    if result.report:
        outputs.append(write_json(out_dir / "report.json", result.report))
        scorecard = out_dir / "scorecard.csv"
        scorecard.write_text(report_csv(result.report), encoding="utf-8")
        outputs.append(scorecard)
    return [*outputs, *write_plots(result, out_dir, bins, v)]


def _search_doc(search: SearchResult) -> dict[str, Any]:
    return {
        "config": config_of(search.weights),
        "views_per_page_view": search.views,
        "contacts_per_page_view": search.contacts,
        "configurations_evaluated": search.evaluated,
    }


def write_plots(
    result: MarketplaceResult, out_dir: Path, bins: list[BinRow], v: Verdict
) -> list[Path]:
    config = result.config
    note = (
        f"seed {config.seed}; {config.hours:g} h at {config.views_per_minute:g} views/min; "
        f"tick {config.tick_seconds:g} s; evolution "
        f"{'on' if config.evolve and result.evolution_available else 'off'}"
    )
    written: list[Path] = []
    mids = np.array([(b.start_hour + b.end_hour) / 2 for b in bins])
    lifts = [b.lift for b in bins]
    span = [0.0, config.hours]
    written += plot_curves_with_bands(
        [
            Curve(
                "observed lift (95% CI)",
                mids,
                lifts,
                lower=[b.lift_ci_low for b in bins],
                upper=[b.lift_ci_high for b in bins],
            ),
            Curve("expected lift of the served arms", mids, [b.expected_lift for b in bins]),
        ],
        out_dir / "marketplace-lift",
        title="Target group vs reference group: lift in contacts per page view",
        xlabel="simulated hours",
        ylabel="lift over the reference group",
        reference_lines=[
            Curve("best possible configuration", span, [v.best_possible_lift_over_reference] * 2,
                  dashed=True),
            Curve("view-maximiser (views trap)", span, [v.trap_rate / v.reference_rate - 1] * 2,
                  color="#d62728"),
            Curve("reference", span, [0.0, 0.0], color="0.6"),
        ],
        note=note,
    )  # fmt: skip

    hours = (np.arange(config.n_windows) + 1) * config.tick_seconds / 3600
    best_rates = np.array([result.arms[a].true_contacts for a in result.log.best_arm_ids])
    written += plot_curves_with_bands(
        [Curve("best arm found (highest posterior mean)", hours, best_rates * 100)],
        out_dir / "marketplace-best",
        title="Best configuration found vs the best possible (true contact rate)",
        xlabel="simulated hours",
        ylabel="true contacts per 100 page views",
        reference_lines=[
            Curve("best possible (grid + local search)", span, [v.best_possible_rate * 100] * 2,
                  dashed=True),
            Curve("reference configuration", span, [v.reference_rate * 100] * 2, color="0.6"),
            Curve("view-maximiser (views trap)", span, [v.trap_rate * 100] * 2, color="#d62728"),
        ],
        note=note,
    )  # fmt: skip
    written += _plot_trap(result, out_dir, v, note)
    return written


def _plot_trap(result: MarketplaceResult, out_dir: Path, v: Verdict, note: str) -> list[Path]:
    """Views against contacts for every founder and evolved arm, with both maximisers."""
    figure = new_figure()
    axes = figure.add_subplot()
    trap = result.trap
    arms = arm_summary(result)
    shares = np.array([a["traffic_share"] or 0.0 for a in arms])
    cloud = np.concatenate(
        [trap.view_maximiser.evaluated_rates, trap.contact_maximiser.evaluated_rates]
    )
    axes.scatter(
        cloud[:, 0],
        cloud[:, 1] * 100,
        s=6,
        color="0.8",
        label="configurations evaluated by the search",
        zorder=0,
    )
    for a, share in zip(arms, shares, strict=True):
        if a["origin"] == "reference":
            continue
        axes.scatter(
            a["true_views_per_page_view"],
            a["true_contacts_per_page_view"] * 100,
            s=30 + 600 * share,
            color="#1f77b4" if a["arm_id"] != result.trap_arm_id else "#d62728",
            alpha=0.55,
            edgecolor="black" if a["arm_id"] == v.best_arm_id else "none",
            linewidth=1.5,
        )
    reference = result.arms[result.reference_arm_id]
    points = [
        (trap.view_maximiser.views, trap.view_maximiser.contacts, "view-maximiser (trap)", "v"),
        (trap.contact_maximiser.views, trap.contact_maximiser.contacts, "contact-maximiser", "^"),
        (reference.true_views, reference.true_contacts, "reference", "s"),
    ]
    for x, y, label, marker in points:
        axes.scatter(
            x, y * 100, marker=marker, s=110, facecolor="none", edgecolor="0.1", linewidth=1.5,
            label=label, zorder=3,
        )  # fmt: skip
    axes.scatter([], [], s=80, color="#1f77b4", alpha=0.55, label="arms (area: traffic share)")
    axes.scatter([], [], s=80, color="#d62728", alpha=0.55, label="the view-maximiser's arm")
    axes.scatter([], [], s=80, color="none", edgecolor="black", label="bandit's best arm")
    figure.suptitle("The views trap: views and contacts of every arm (true expectations)")
    axes.set_title(note, fontsize="x-small", color="0.35")
    axes.set_xlabel("block clicks (listing views) per page view")
    axes.set_ylabel("contacts per 100 page views")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower left", fontsize="small")
    return save_figure(figure, out_dir / "marketplace-views-trap")
