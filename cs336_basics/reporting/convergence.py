"""Has the run converged? A power-law fit of the validation curve and a plateau verdict.

The original author: "it's hard to tell from validation loss whether something
has converged". Two complementary answers:

1. **Power-law fit** L(t) = E + A·t^(−α) over training tokens t (the form of
   Kaplan et al. 2020 / Hoffmann et al. 2022 for loss vs data at fixed model
   size). E is the loss this model/recipe would reach with unlimited tokens;
   the fit also projects the loss at 2× and 10× the tokens seen, i.e. what more
   training would buy. Fitting: for a fixed α the model is linear in (E, A), so
   we solve that least-squares problem exactly on a grid of α (log-spaced), then
   refine α by golden-section search around the best grid point. Only numpy,
   no scipy; tokens are scaled by the largest t so the problem is well
   conditioned. A ≥ 0 is enforced (a decreasing curve). Points before
   ``skip_fraction`` of the run are dropped: early loss is dominated by warmup
   and the fast initial drop that no single power law describes.
   Caveat (docs/evaluation.md): with a cosine schedule the tail of the curve is
   shaped by the learning-rate decay, so E is a property of *this schedule's*
   curve, not a true data-scaling asymptote; projections are rough.

2. **Plateau verdict**, model-free: a straight line fitted to the last
   ``window_fraction`` of the curve gives the improvement over that window;
   it is compared with the noise (the scatter of the points about that line,
   as a standard error of the improvement, and at least 0.1% of the loss).
   "improving" when the drop is more than three times the noise, "rising"
   when the loss went up by more than that, else "plateaued" (three, not two:
   with a dozen points the slope's error is t-distributed and two standard
   errors call a flat curve "improving" about 7% of the time; three, ~1%).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cs336_basics.errors import UserError
from cs336_basics.reporting.figures import pyplot, save_figure

MIN_POINTS = 4


@dataclass
class PowerLawFit:
    """L(t) = E + A * t^(-alpha), t in tokens."""

    E: float
    A: float
    alpha: float
    rmse: float
    """Root-mean-square residual of the fit, in loss units."""
    num_points: int
    t_max: float

    def predict(self, t: np.ndarray | float) -> np.ndarray | float:
        return self.E + self.A * np.power(np.asarray(t, dtype=np.float64), -self.alpha)

    def projected(self, factor: float) -> float:
        """Predicted loss after ``factor`` times the tokens of the fitted run."""
        return float(self.predict(self.t_max * factor))


def _solve_linear(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least squares y ≈ E + A x with A >= 0: returns (E, A, sse)."""
    design = np.stack([np.ones_like(x), x], axis=1)  # (N, 2)
    (e, a), *_ = np.linalg.lstsq(design, y, rcond=None)
    if a < 0:  # the constrained optimum then lies on A = 0
        e, a = float(y.mean()), 0.0
    resid = y - (e + a * x)
    return float(e), float(a), float(resid @ resid)


def fit_power_law(tokens, losses, *, skip_fraction: float = 0.1, alpha_range: tuple[float, float] = (0.01, 3.0),
                  grid: int = 200) -> PowerLawFit:
    """Fit L(t) = E + A t^-α to (tokens, losses); UserError when fewer than 4 usable points remain."""
    t = np.asarray(tokens, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    keep = np.isfinite(t) & np.isfinite(y) & (t > 0)
    t, y = t[keep], y[keep]
    if len(t) >= MIN_POINTS:
        later = t >= skip_fraction * t.max()
        if later.sum() >= MIN_POINTS:
            t, y = t[later], y[later]
    if len(t) < MIN_POINTS:
        raise UserError(f"need at least {MIN_POINTS} finite validation points to fit a learning curve, got {len(t)}; "
                        "evaluate more often (train.eval_interval) or train longer")
    t_max = float(t.max())
    ts = t / t_max  # scaled to (0, 1] so t^-α stays moderate for every α on the grid

    def sse(alpha: float) -> float:
        return _solve_linear(ts ** -alpha, y)[2]

    alphas = np.geomspace(alpha_range[0], alpha_range[1], grid)
    errors = np.array([sse(a) for a in alphas])
    i = int(errors.argmin())
    lo, hi = alphas[max(i - 1, 0)], alphas[min(i + 1, grid - 1)]
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(60):  # golden-section search on the bracketing grid cell
        a1, a2 = hi - golden * (hi - lo), lo + golden * (hi - lo)
        if sse(a1) < sse(a2):
            hi = a2
        else:
            lo = a1
    alpha = (lo + hi) / 2
    if sse(alpha) > errors[i]:
        alpha = float(alphas[i])
    e, a_scaled, total = _solve_linear(ts ** -alpha, y)
    # back to unscaled tokens: A_s (t/t_max)^-α = A_s t_max^α t^-α
    a = float(a_scaled * t_max ** alpha)
    return PowerLawFit(E=e, A=a, alpha=float(alpha), rmse=math.sqrt(total / len(t)), num_points=len(t), t_max=t_max)


@dataclass
class PlateauVerdict:
    verdict: str
    """"improving", "plateaued", "rising" or "insufficient data"."""
    improvement: float | None
    """Loss drop over the window, from a straight line through its points (positive = better)."""
    noise: float | None
    """Standard error of that drop (at least 0.1% of the loss)."""
    window_start: float | None
    """First x (tokens) of the window."""
    num_points: int

    def explain(self) -> str:
        if self.improvement is None:
            return f"{self.verdict}: fewer than 3 points in the final window"
        return (f"{self.verdict}: the loss changed by {-self.improvement:+.4f} over the last part of the run "
                f"(noise ±{self.noise:.4f})")


def plateau_verdict(tokens, losses, *, window_fraction: float = 0.25) -> PlateauVerdict:
    t = np.asarray(tokens, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    keep = np.isfinite(t) & np.isfinite(y)
    t, y = t[keep], y[keep]
    if len(t) < 3:
        return PlateauVerdict("insufficient data", None, None, None, len(t))
    start = t.max() - window_fraction * (t.max() - t.min())
    sel = t >= start
    if sel.sum() < 3:
        sel = np.zeros_like(sel)
        sel[-3:] = True
    tw, yw = t[sel], y[sel]
    span = float(tw.max() - tw.min())
    design = np.stack([np.ones_like(tw), tw - tw.mean()], axis=1)  # (N, 2)
    coef, *_ = np.linalg.lstsq(design, yw, rcond=None)
    resid = yw - design @ coef
    dof = max(len(tw) - 2, 1)
    slope_se = math.sqrt(float(resid @ resid) / dof / max(float(((tw - tw.mean()) ** 2).sum()), 1e-300))
    improvement = -float(coef[1]) * span
    noise = max(slope_se * span, 1e-3 * abs(float(yw.mean())))
    if improvement > 3 * noise:
        verdict = "improving"
    elif improvement < -3 * noise:
        verdict = "rising"
    else:
        verdict = "plateaued"
    return PlateauVerdict(verdict, improvement, noise, float(tw.min()), int(sel.sum()))


def convergence_report(tokens, losses, **fit_options) -> dict[str, Any]:
    """Fit + verdict as one JSON-able dict (the fit is None when it cannot be computed)."""
    verdict = plateau_verdict(tokens, losses)
    out: dict[str, Any] = {"verdict": asdict(verdict), "verdict_text": verdict.explain(), "fit": None}
    try:
        fit = fit_power_law(tokens, losses, **fit_options)
    except UserError as exc:
        out["fit_error"] = str(exc)
        return out
    out["fit"] = asdict(fit)
    out["final_loss"] = float(np.asarray(losses, dtype=np.float64)[np.isfinite(np.asarray(losses, dtype=np.float64))][-1])
    out["projected_2x"] = fit.projected(2.0)
    out["projected_10x"] = fit.projected(10.0)
    return out


def plot_convergence(tokens, losses, fit: PowerLawFit | None, out_stem: str | Path, title: str = "validation loss") -> list[Path]:
    """Data, the fitted curve extended to 10× the tokens and the asymptote E; returns [PNG path]."""
    plt = pyplot()
    t = np.asarray(tokens, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    ax.plot(t, y, "o", markersize=3, label="measured")
    if fit is not None:
        grid = np.geomspace(max(t[t > 0].min(), 1.0), fit.t_max * 10, 200)
        ax.plot(grid, fit.predict(grid), "-", label=f"fit: {fit.E:.3f} + A·t^-{fit.alpha:.3f}")
        ax.axhline(fit.E, linestyle="--", color="gray", linewidth=1, label=f"asymptote E = {fit.E:.3f}")
        ax.axvline(fit.t_max, linestyle=":", color="gray", linewidth=1)
        for factor in (2, 10):
            ax.plot([fit.t_max * factor], [fit.projected(factor)], "s", markersize=5, color="tab:red")
    ax.set_xscale("log")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, out_stem)
