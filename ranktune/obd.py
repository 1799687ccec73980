"""The Open Bandit Dataset's small samples, and the Open Bandit Pipeline's quickstart result
reproduced with ranktune's own estimator and propensities (docs/offpolicy.md).

The Open Bandit Dataset (Saito, Aihara, Matsutani & Narita, "Open Bandit Dataset and
Pipeline: Towards Realistic and Reproducible Off-Policy Evaluation", NeurIPS 2021 Datasets
and Benchmarks; https://research.zozo.com/data.html) logs ZOZOTOWN's fashion
recommendations, three slots per impression, under a uniform random policy and under
Bernoulli Thompson sampling, with the true propensities. A 10,000-row sample per campaign
and policy ships inside the ``obp`` source distribution on PyPI (Apache-2.0 package; the
dataset is CC BY 4.0). Nothing of it is in this repository: the pinned source distribution is
downloaded once, checked against its SHA-256, and only the files used here are kept in a
cache directory (with a checksum of each, verified on every load).

The quickstart (obp 0.5.4, examples/quickstart/obd.ipynb): IPW on the random policy's "all"
campaign logs estimates that Bernoulli Thompson sampling with ZOZOTOWN's production Beta
parameters (``obp/policy/conf/prior_bts.yaml``) would get 1.198126 times the random
policy's click rate. obp computes the candidate's probability of serving item ``a`` in slot
``p`` (the ``(p+1)``-th largest Beta draw of 80) from 100,000 simulated rankings
(``BernoulliTS.compute_batch_action_dist(n_sim=100000)``, ``random_state=12345``); ranktune
integrates it (bandit.propensities), so the two agree up to obp's Monte Carlo error, which
:func:`reproduce_quickstart` measures too.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import yaml

from bandit.offpolicy import LoggedSamples, OffPolicyEstimate, ips
from bandit.propensities import beta_rank_probabilities
from simulations.cache import user_cache_dir

FloatArray = npt.NDArray[np.float64]

OBP_VERSION = "0.5.4"
SDIST_URL = (
    "https://files.pythonhosted.org/packages/55/92/"
    "f8165b949b0bd1d0bedd9f339c2a029a60c2b5156f2fcace5bd59f682d9a/obp-0.5.4.tar.gz"
)
SDIST_SHA256 = "418282ebcad5d96d31671a37e9fc6c9930513d75a48dcf9dc25595eff31e3109"
# Campaign "all": the logs of both behaviour policies and the production Beta parameters.
MEMBERS = {
    "random_all.csv": f"obp-{OBP_VERSION}/obp/dataset/obd/random/all/all.csv",
    "bts_all.csv": f"obp-{OBP_VERSION}/obp/dataset/obd/bts/all/all.csv",
    "prior_bts.yaml": f"obp-{OBP_VERSION}/obp/policy/conf/prior_bts.yaml",
}
MANIFEST = "SHA256SUMS.json"
# The published figure (obp 0.5.4 quickstart, "relative_estimated_policy_value" of ipw).
PUBLISHED_RELATIVE_VALUE = 1.198126
OBP_SIMULATIONS = 100_000
SLOTS = 3


class DatasetError(Exception):
    """The dataset could not be downloaded, or a cached file does not match its checksum."""


def default_cache_dir() -> Path:
    """The ``obd-<obp version>`` directory of ranktune's user cache (simulations.cache)."""
    return user_cache_dir(f"obd-{OBP_VERSION}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(url: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            data: bytes = answer.read()
    except OSError as error:
        raise DatasetError(f"could not download {url}: {error}") from error
    return data


def fetch(cache_dir: Path | None = None) -> Path:
    """The cache directory holding the files in :data:`MEMBERS`, downloading the pinned
    ``obp`` source distribution the first time (and whenever a cached file is missing or
    does not match the manifest written then)."""
    directory = cache_dir or default_cache_dir()
    if _cached(directory):
        return directory
    archive = _download(SDIST_URL)
    if _sha256(archive) != SDIST_SHA256:
        raise DatasetError(
            f"obp-{OBP_VERSION}.tar.gz from {SDIST_URL} has SHA-256 {_sha256(archive)}, "
            f"expected {SDIST_SHA256}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    sums = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for name, member in MEMBERS.items():
            extracted = tar.extractfile(member)
            if extracted is None:
                raise DatasetError(f"{member} is missing from obp-{OBP_VERSION}.tar.gz")
            data = extracted.read()
            (directory / name).write_bytes(data)
            sums[name] = _sha256(data)
    (directory / MANIFEST).write_text(json.dumps(sums, indent=2, sort_keys=True) + "\n")
    return directory


def _cached(directory: Path) -> bool:
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return False
    sums = json.loads(manifest.read_text())
    return all(
        (directory / name).is_file() and _sha256((directory / name).read_bytes()) == sums.get(name)
        for name in MEMBERS
    )


@dataclass(frozen=True)
class Logs:
    """One behaviour policy's logs: the item shown, its slot (0, 1, 2), click, propensity."""

    items: npt.NDArray[np.int64]
    slots: npt.NDArray[np.int64]
    clicks: FloatArray
    propensities: FloatArray


def load_logs(directory: Path, policy: str) -> Logs:
    """``policy``: ``random`` or ``bts`` (campaign "all"). Slots are the CSV's positions
    1..3 renumbered from 0, as obp does (dense ranks)."""
    with (directory / f"{policy}_all.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    positions = np.array([int(row["position"]) for row in rows])
    return Logs(
        items=np.array([int(row["item_id"]) for row in rows], dtype=np.int64),
        slots=np.unique(positions, return_inverse=True)[1].astype(np.int64),
        clicks=np.array([float(row["click"]) for row in rows]),
        propensities=np.array([float(row["propensity_score"]) for row in rows]),
    )


def load_production_posteriors(directory: Path) -> tuple[FloatArray, FloatArray]:
    """ZOZOTOWN's Beta parameters of the Thompson sampling policy, campaign "all"."""
    prior = yaml.safe_load((directory / "prior_bts.yaml").read_text())["all"]
    return np.asarray(prior["alpha"], dtype=np.float64), np.asarray(prior["beta"], dtype=np.float64)


@dataclass(frozen=True)
class QuickstartResult:
    estimate: OffPolicyEstimate  # IPS of the Thompson policy's click rate, random logs
    random_click_rate: float  # the random policy's on-policy value (its logs' mean)
    relative_value: float  # estimate / random click rate: the published 1.198126
    relative_low: float
    relative_high: float
    integration_error: float  # bound on any propensity's error (bandit.propensities)
    relative_integration_error: float  # what it can change of relative_value, at most
    obp_monte_carlo_sd: float  # sd of obp's relative value from its 100,000 simulations
    bts_click_rate: float  # the Thompson policy's own logs: its on-policy value
    bts_click_rate_se: float


def _monte_carlo_sd(
    alphas: FloatArray, betas: FloatArray, logs: Logs, rng: np.random.Generator, draws: int
) -> float:
    """The standard deviation of the IPS value when the slot probabilities are the
    frequencies of ``OBP_SIMULATIONS`` simulated rankings (obp's way), estimated from
    ``draws`` seeded rankings: the value is a mean over rankings of
    ``sum_i click_i 1[ranking puts item_i in slot_i] / (n p_i)``."""
    clicked = logs.clicks > 0
    weights = logs.clicks[clicked] / (logs.propensities[clicked] * logs.clicks.size)
    per_ranking = np.empty(draws)
    chunk = 5_000
    for start in range(0, draws, chunk):
        thetas = rng.beta(alphas, betas, size=(min(chunk, draws - start), alphas.size))
        top = np.argsort(-thetas, axis=1)[:, :SLOTS]
        hits = top[:, logs.slots[clicked]] == logs.items[clicked]
        per_ranking[start : start + top.shape[0]] = hits @ weights
    return float(np.std(per_ranking, ddof=1) / np.sqrt(OBP_SIMULATIONS))


def reproduce_quickstart(
    directory: Path, *, level: float = 0.95, seed: int = 12345, draws: int = 20_000
) -> QuickstartResult:
    random_logs = load_logs(directory, "random")
    bts_logs = load_logs(directory, "bts")
    alphas, betas = load_production_posteriors(directory)
    ranks = beta_rank_probabilities(alphas, betas, ranks=SLOTS)
    targets = ranks.probabilities[random_logs.items, random_logs.slots]
    estimate = ips(
        LoggedSamples.of(random_logs.clicks, random_logs.propensities, targets), level=level
    )
    base = float(np.mean(random_logs.clicks))
    sd = _monte_carlo_sd(alphas, betas, random_logs, np.random.default_rng(seed), draws)
    bts_rate = float(np.mean(bts_logs.clicks))
    # IPS is linear in the propensities: each is off by at most ranks.error.
    propagated = ranks.error * float(np.mean(random_logs.clicks / random_logs.propensities))
    return QuickstartResult(
        estimate=estimate,
        random_click_rate=base,
        relative_value=estimate.value / base,
        relative_low=estimate.low / base,
        relative_high=estimate.high / base,
        integration_error=ranks.error,
        relative_integration_error=propagated / base,
        obp_monte_carlo_sd=sd / base,
        bts_click_rate=bts_rate,
        bts_click_rate_se=float(np.sqrt(bts_rate * (1 - bts_rate) / bts_logs.clicks.size)),
    )


def describe(result: QuickstartResult) -> str:
    e = result.estimate
    return "\n".join(
        [
            "Open Bandit Dataset (obp 0.5.4 sample), campaign 'all', random-policy logs: "
            f"{e.samples:.0f} impressions",
            f"random policy click rate (on-policy):   {result.random_click_rate:.6f}",
            f"Bernoulli TS, production posteriors, IPS: {e.value:.6f}  "
            f"{e.level:.0%} CI [{e.low:.6f}, {e.high:.6f}]  ESS {e.effective_sample_size:.0f}",
            f"relative to the random policy:          {result.relative_value:.6f}  "
            f"{e.level:.0%} CI [{result.relative_low:.3f}, {result.relative_high:.3f}]",
            f"published (obp quickstart, Monte Carlo): {PUBLISHED_RELATIVE_VALUE:.6f}  "
            f"(obp's Monte Carlo sd {result.obp_monte_carlo_sd:.4f}; difference "
            f"{(result.relative_value - PUBLISHED_RELATIVE_VALUE) / result.obp_monte_carlo_sd:+.2f}"
            " sd)",
            f"propensity integration error bound:     {result.integration_error:.1e} "
            f"(at most {result.relative_integration_error:.1e} of the relative value)",
            f"Bernoulli TS's own logs (on-policy):    {result.bts_click_rate:.6f} "
            f"+- {1.96 * result.bts_click_rate_se:.6f}",
            *(f"warning: {note}" for note in e.warnings),
        ]
    )
