"""Arm-selection policies over Bernoulli-like arms, vectorised over independent runs.

Every policy answers the same question: given, for each arm, its successes and failures so
far, which arm is pulled next?  Statistics are arrays of shape ``(..., K)``; the leading axes
are independent bandits (the simulator runs 200 of them at once, the live service one), and
the answer has the leading shape.

In the live service "successes" and "failures" are the reference-normalised pseudo-counts
of the reference-ratio update (``alpha - prior_alpha`` and ``beta - prior_beta``), which
are real numbers; every policy here accepts real-valued counts.

Randomness comes only from the injected :class:`numpy.random.Generator`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bandit.errors import InvalidParameterError
from bandit.propensities import argmax_probabilities

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Policy(ABC):
    """Chooses one arm per bandit from per-arm success and failure counts."""

    name: str

    @abstractmethod
    def choose(
        self, successes: npt.ArrayLike, failures: npt.ArrayLike, rng: np.random.Generator
    ) -> IntArray:
        """Return the index of the arm to pull for every bandit (shape ``successes.shape[:-1]``)."""

    def choose_one(
        self, successes: npt.ArrayLike, failures: npt.ArrayLike, rng: np.random.Generator
    ) -> int:
        """Convenience for a single bandit: statistics of shape ``(K,)``, answer an ``int``."""
        if np.ndim(successes) != 1:
            raise InvalidParameterError(
                f"choose_one needs statistics of shape (K,); got {np.shape(successes)}",
                parameter="successes",
            )
        return int(self.choose(successes, failures, rng))

    def probabilities(self, successes: npt.ArrayLike, failures: npt.ArrayLike) -> FloatArray:
        """For a single bandit (statistics of shape ``(K,)``): the probability that
        :meth:`choose` pulls each arm, the propensities off-policy estimators divide by
        (bandit.offpolicy). A policy that cannot state them says so."""
        raise InvalidParameterError(
            f"policy {self.name!r} does not state its choice probabilities", parameter="policy"
        )


def _as_counts(successes: npt.ArrayLike, failures: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    s = np.asarray(successes, dtype=np.float64)
    f = np.asarray(failures, dtype=np.float64)
    if s.shape != f.shape or s.ndim == 0 or s.shape[-1] == 0:
        raise InvalidParameterError(
            f"successes and failures must have the same non-empty shape (..., K); "
            f"got {s.shape} and {f.shape}",
            parameter="failures" if s.ndim and s.shape[-1] else "successes",
        )
    return s, f


def _one_bandit(successes: npt.ArrayLike, failures: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    s, f = _as_counts(successes, failures)
    if s.ndim != 1:
        raise InvalidParameterError(
            f"probabilities need statistics of shape (K,); got {s.shape}", parameter="successes"
        )
    return s, f


def _certain(arm: int, k: int) -> FloatArray:
    probabilities = np.zeros(k)
    probabilities[arm] = 1.0
    return probabilities


def _random_arms(rng: np.random.Generator, shape: tuple[int, ...], k: int) -> IntArray:
    return rng.integers(0, k, size=shape, dtype=np.int64)


def _argmax_arms(values: FloatArray) -> IntArray:
    # numpy's stubs type ``argmax(..., axis=...)`` as Any; the annotation restores the type.
    arms: IntArray = np.argmax(values, axis=-1).astype(np.int64, copy=False)
    return arms


def _means_or(s: FloatArray, pulls: FloatArray, unplayed: float) -> FloatArray:
    """``s / pulls`` where an arm was played, ``unplayed`` elsewhere (no warnings, no errstate:
    entering ``np.errstate`` costs more than the division itself at these sizes)."""
    means: FloatArray = np.divide(s, pulls, out=np.full_like(s, unplayed), where=pulls > 0)
    return means


@dataclass(frozen=True)
class PolicyParameters:
    """The tunable constants of the policies, and the one declaration of their defaults.

    ``epsilon`` is EpsilonGreedy's exploration probability, ``c`` EpsilonDecreasing's
    constant, ``ucb_alpha`` UCB1's ``alpha``.  Each policy validates its own constant when
    it is built (:func:`make_policy`).
    """

    epsilon: float = 0.1
    c: float = 5.0
    ucb_alpha: float = 2.0


DEFAULT_POLICY_PARAMETERS = PolicyParameters()


@dataclass(frozen=True)
class ThompsonSampling(Policy):
    """Beta-Bernoulli Thompson sampling (Thompson 1933; Agrawal & Goyal 2012).

    Draw ``theta_k ~ Beta(prior_alpha + s_k, prior_beta + f_k)`` and pull ``argmax theta``.
    """

    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    name: str = "thompson"

    def __post_init__(self) -> None:
        for label, value in (("prior_alpha", self.prior_alpha), ("prior_beta", self.prior_beta)):
            if not (np.isfinite(value) and value > 0):
                raise InvalidParameterError(
                    f"{label} must be a finite number > 0, got {value!r}", parameter=label
                )

    def choose(
        self, successes: npt.ArrayLike, failures: npt.ArrayLike, rng: np.random.Generator
    ) -> IntArray:
        s, f = _as_counts(successes, failures)
        thetas = rng.beta(self.prior_alpha + s, self.prior_beta + f)
        return _argmax_arms(thetas)

    def probabilities(self, successes: npt.ArrayLike, failures: npt.ArrayLike) -> FloatArray:
        """P(arm k's draw is the largest), by numerical integration (error under 1e-6:
        bandit.propensities.argmax_probabilities, a few milliseconds where the exact rule of
        beta_rank_probabilities takes tens; the draws are continuous, so ties have
        probability 0)."""
        s, f = _one_bandit(successes, failures)
        if s.size == 0:
            return np.zeros(0)
        first: FloatArray = argmax_probabilities(
            (self.prior_alpha + s)[None, :], (self.prior_beta + f)[None, :]
        )[0]
        return first

    def posterior_parameters(
        self, successes: npt.ArrayLike, failures: npt.ArrayLike
    ) -> tuple[tuple[float, float], ...]:
        """``(prior_alpha + s_k, prior_beta + f_k)`` per arm, for :func:`thompson_choice`
        (empty for an experiment without arms: there is nothing to choose from yet)."""
        s = np.asarray(successes, dtype=np.float64)
        f = np.asarray(failures, dtype=np.float64)
        if s.shape != f.shape or s.ndim != 1:
            raise InvalidParameterError(
                "successes and failures must have the same shape (K,); got "
                f"{s.shape} and {f.shape}",
                parameter="failures" if s.ndim == 1 else "successes",
            )
        alphas = (self.prior_alpha + s).tolist()
        betas = (self.prior_beta + f).tolist()
        return tuple(zip(alphas, betas, strict=True))


def thompson_choice(
    posterior_parameters: Sequence[tuple[float, float]], rng: np.random.Generator
) -> int:
    """One Thompson-sampling choice from per-arm Beta parameters, for a single request.

    The same draws and the same arm as :meth:`ThompsonSampling.choose` with the same
    generator (the generator consumes its stream element by element, and ties go to the first
    maximum as with ``np.argmax``), but K scalar ``Generator.beta`` calls instead of one array
    call: at K = 5 the array call costs about 30 us in broadcasting set-up, the scalar calls
    about 2 us each. The live service makes one such choice per request.
    """
    beta = rng.beta
    best_index, best_theta = 0, -1.0
    for index, (alpha, beta_) in enumerate(posterior_parameters):
        theta = beta(alpha, beta_)
        if theta > best_theta:
            best_index, best_theta = index, theta
    return best_index


class ThompsonDraws:
    """Thompson-sampling choices for one fixed posterior, drawn in blocks, served one by one.

    Every choice is the argmax of its own independent draw of all K Beta posteriors, exactly
    as :func:`thompson_choice` makes it, so the served choices have Thompson sampling's
    distribution; only the draws are made ``block`` requests at a time, in one vectorised
    call, and kept until served. Whoever holds the posterior drops its ``ThompsonDraws``
    when the posterior changes (the live service builds one per snapshot), so no choice is
    ever served from a stale posterior.

    ``block`` defaults to about ``BLOCK_DRAWS`` Beta draws per block: the per-call overhead
    of NumPy (tens of microseconds) is shared by many requests, and one block stays a
    fraction of a millisecond of work at any K. Not thread-safe: the service makes its
    choices on the event loop only.
    """

    BLOCK_DRAWS = 4096

    __slots__ = ("_alphas", "_betas", "_block", "_choices")

    def __init__(
        self, posterior_parameters: Sequence[tuple[float, float]], block: int | None = None
    ) -> None:
        params = np.asarray(posterior_parameters, dtype=np.float64).reshape(-1, 2)
        if params.shape[0] == 0:
            raise InvalidParameterError(
                "ThompsonDraws needs at least one arm", parameter="posterior_parameters"
            )
        if not (np.all(np.isfinite(params)) and np.all(params > 0)):
            raise InvalidParameterError(
                "posterior parameters must be finite numbers > 0",
                parameter="posterior_parameters",
            )
        k = params.shape[0]
        self._alphas = params[:, 0]
        self._betas = params[:, 1]
        self._block = block if block is not None else max(1, self.BLOCK_DRAWS // k)
        if self._block < 1:
            raise InvalidParameterError(f"block must be >= 1, got {block}", parameter="block")
        self._choices: list[int] = []

    def next(self, rng: np.random.Generator) -> int:
        """The next choice (an arm index), drawing a new block when the last one is spent."""
        if not self._choices:
            thetas = rng.beta(self._alphas, self._betas, size=(self._block, self._alphas.size))
            # Reversed, so that pop() serves the block in the order it was drawn.
            self._choices = np.argmax(thetas[::-1], axis=1).tolist()
        return self._choices.pop()


@dataclass(frozen=True)
class UCB1(Policy):
    """UCB1 of Auer, Cesa-Bianchi & Fischer (2002).

    Pull every arm once, then ``argmax mean_k + sqrt(alpha * ln t / n_k)`` with ``t`` the
    total number of pulls so far; ``alpha = 2`` is the original index.
    """

    alpha: float = DEFAULT_POLICY_PARAMETERS.ucb_alpha
    name: str = "ucb1"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.alpha) and self.alpha > 0):
            raise InvalidParameterError(
                f"alpha must be a finite number > 0, got {self.alpha!r}", parameter="alpha"
            )

    def choose(
        self, successes: npt.ArrayLike, failures: npt.ArrayLike, rng: np.random.Generator
    ) -> IntArray:
        s, f = _as_counts(successes, failures)
        pulls = s + f
        total = np.sum(pulls, axis=-1, keepdims=True)
        played = pulls > 0
        log_total = self.alpha * np.log(np.maximum(total, 1.0))
        index = _means_or(s, pulls, np.inf)
        bonus = np.divide(log_total, pulls, out=np.zeros_like(pulls), where=played)
        index += np.sqrt(bonus)
        return _argmax_arms(index)

    def probabilities(self, successes: npt.ArrayLike, failures: npt.ArrayLike) -> FloatArray:
        """Deterministic: probability 1 on the arm :meth:`choose` pulls."""
        s, f = _one_bandit(successes, failures)
        return _certain(int(self.choose(s, f, np.random.default_rng(0))), s.size)


def _greedy_arms(s: FloatArray, f: FloatArray) -> IntArray:
    # Unplayed arms rank first so that every arm is tried once before exploitation starts.
    return _argmax_arms(_means_or(s, s + f, np.inf))


def _epsilon_greedy_probabilities(s: FloatArray, f: FloatArray, epsilon: float) -> FloatArray:
    """``epsilon / K`` on every arm plus ``1 - epsilon`` on the greedy one."""
    k = s.size
    probabilities: FloatArray = np.full(k, epsilon / k) + (1.0 - epsilon) * _certain(
        int(_greedy_arms(s, f)), k
    )
    return probabilities


def _epsilon_greedy(
    s: FloatArray, f: FloatArray, epsilons: FloatArray | float, rng: np.random.Generator
) -> IntArray:
    shape = s.shape[:-1]
    greedy = _greedy_arms(s, f)
    explore = rng.random(size=shape) < epsilons
    arms: IntArray = np.where(explore, _random_arms(rng, shape, s.shape[-1]), greedy)
    return arms


@dataclass(frozen=True)
class EpsilonGreedy(Policy):
    """Constant epsilon-greedy: a uniformly random arm with probability ``epsilon``, else the
    arm with the best empirical mean. Its regret grows linearly in time for any ``epsilon > 0``.
    """

    epsilon: float = DEFAULT_POLICY_PARAMETERS.epsilon
    name: str = "egreedy"

    def __post_init__(self) -> None:
        if not (0.0 <= self.epsilon <= 1.0):
            raise InvalidParameterError(
                f"epsilon must be in [0, 1], got {self.epsilon!r}", parameter="epsilon"
            )

    def choose(
        self, successes: npt.ArrayLike, failures: npt.ArrayLike, rng: np.random.Generator
    ) -> IntArray:
        s, f = _as_counts(successes, failures)
        return _epsilon_greedy(s, f, self.epsilon, rng)

    def probabilities(self, successes: npt.ArrayLike, failures: npt.ArrayLike) -> FloatArray:
        s, f = _one_bandit(successes, failures)
        return _epsilon_greedy_probabilities(s, f, self.epsilon)


@dataclass(frozen=True)
class EpsilonDecreasing(Policy):
    """Epsilon-greedy with ``epsilon_t = min(1, c * K / t)`` (the epsilon_n-greedy of Auer et
    al. 2002 with ``d = 1``); ``t`` is the number of pulls so far plus one.
    """

    c: float = DEFAULT_POLICY_PARAMETERS.c
    name: str = "edecay"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.c) and self.c > 0):
            raise InvalidParameterError(
                f"c must be a finite number > 0, got {self.c!r}", parameter="c"
            )

    def choose(
        self, successes: npt.ArrayLike, failures: npt.ArrayLike, rng: np.random.Generator
    ) -> IntArray:
        s, f = _as_counts(successes, failures)
        return _epsilon_greedy(s, f, self._epsilons(s, f), rng)

    def _epsilons(self, s: FloatArray, f: FloatArray) -> FloatArray:
        t = np.sum(s + f, axis=-1) + 1.0
        epsilons: FloatArray = np.minimum(1.0, self.c * s.shape[-1] / t)
        return epsilons

    def probabilities(self, successes: npt.ArrayLike, failures: npt.ArrayLike) -> FloatArray:
        s, f = _one_bandit(successes, failures)
        return _epsilon_greedy_probabilities(s, f, float(self._epsilons(s, f)))


POLICY_NAMES = ("thompson", "ucb1", "egreedy", "edecay")


def make_policy(
    name: str,
    *,
    prior_alpha: float = 1.0,
    prior_beta: float = 1.0,
    epsilon: float = DEFAULT_POLICY_PARAMETERS.epsilon,
    c: float = DEFAULT_POLICY_PARAMETERS.c,
    ucb_alpha: float = DEFAULT_POLICY_PARAMETERS.ucb_alpha,
) -> Policy:
    """Build a policy from its short name (``thompson``, ``ucb1``, ``egreedy``, ``edecay``)."""
    if name == "thompson":
        return ThompsonSampling(prior_alpha=prior_alpha, prior_beta=prior_beta)
    if name == "ucb1":
        return UCB1(alpha=ucb_alpha)
    if name == "egreedy":
        return EpsilonGreedy(epsilon=epsilon)
    if name == "edecay":
        return EpsilonDecreasing(c=c)
    raise InvalidParameterError(
        f"policy must be one of {', '.join(POLICY_NAMES)}; got {name!r}", parameter="policy"
    )
