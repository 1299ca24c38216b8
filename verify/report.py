"""The report: report.md (claims table + controls + figures), report.json (every number), terminal lines."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402

from toy_models.checkpoint import atomic_write_bytes, atomic_write_json, temporary_name  # noqa: E402
from verify.registry import Claim, Verdict  # noqa: E402

REGIME_COLUMNS = ("runs", "lr", "steps", "gain", "kl_to_base", "step_ratio", "drift_ratio", "walk_ratio",
                  "sign_consistency", "sparsity_bf16_all", "sparsity_bf16_eligible", "untouched_share")


def save_figure(fig, ctx, claim_id: str) -> str:
    """Save ``fig`` as figures/<claim_id>.png atomically; returns the path relative to the report."""
    path = ctx.figures / f"{claim_id.replace('.', '_')}.png"
    tmp = temporary_name(path)  # unique: two verify processes may write the same figure at once
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return str(path.relative_to(ctx.out_dir))


def paired_seed_bars(seeds, left, right, labels: tuple[str, str], ylabel: str, title: str,
                     ylim=None):
    """One figure of two bars per seed (e.g. RL against SFT); returns (fig, ax) for extra marks, unsaved."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = range(len(seeds))
    ax.bar([i - 0.2 for i in x], left, 0.4, label=labels[0])
    ax.bar([i + 0.2 for i in x], right, 0.4, label=labels[1])
    ax.set_xticks(list(x), [f"seed {s}" for s in seeds])
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if ylim is not None:
        ax.set_ylim(*ylim)
    return fig, ax


def line(claim: Claim, v: Verdict) -> str:
    """One terminal line per claim."""
    return f"{v.status:15s} {claim.id:28s} {v.headline}"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _regime_cell(v: Verdict) -> str:
    from verify.finish import regime_text

    return regime_text(v.regime) if v.regime else "-"


def regime_table(results: list[tuple[Claim, Verdict]]) -> list[str]:
    """Markdown table of the profile's regime: per method, medians over every distinct run the claims used."""
    from verify.finish import regime_summary

    records = list({r["run"]: r for _, v in results for r in v.runs}.values())
    if not records:
        return []
    summary = regime_summary(records)
    out = ["| method | " + " | ".join(REGIME_COLUMNS) + " |", "|---" * (len(REGIME_COLUMNS) + 1) + "|"]
    for method, m in summary.items():
        cells = ["-" if m.get(k) is None else f"{m[k]:.3g}" for k in REGIME_COLUMNS]
        out.append(f"| {method} | " + " | ".join(cells) + " |")
    return out


def render_markdown(profile_name: str, results: list[tuple[Claim, Verdict]], meta: dict) -> str:
    """report.md text."""
    out = [f"# threegate report, profile `{profile_name}`", ""]
    out.append(f"Base model: `{meta.get('base_dir', '?')}`; seeds {meta.get('seeds')}; base pass rates "
               + ", ".join(f"{k} {100 * v:.0f} %" for k, v in meta.get("base_pass_rates", {}).items()) + ".")
    out.append("Intervals are 95 % Student-t intervals over seeds. Each rule was fixed in code before the run.")
    out.append("")
    table = regime_table(results)
    if table:
        out.append("## Regime of this profile")
        out.append("")
        out.append("Medians over the distinct fine-tuning runs the claims used (docs/science.md section 7): step ratio = "
                   "median per-step change / half-ULP, drift ratio = median |w_T - w_0| / half-ULP on the fp32 master, "
                   "walk ratio = lr sqrt(T) / half-ULP, sign consistency = median |sum of changes| / sum of |changes|; "
                   "sparsity over all parameters and over those that received a gradient. Published RLVR: step ratio "
                   "about 0.016 to 0.033, drift ratio about 0.4, ||dW|| / ||W|| about 1e-3.")
        out.append("")
        out.extend(table)
        out.append("")
    out.append("| claim | paper | paper's number | ours | rule | verdict | regime | figure |")
    out.append("|---|---|---|---|---|---|---|---|")
    for c, v in results:
        fig = ", ".join(f"[png]({f})" for f in v.figures) or "-"
        out.append(f"| `{c.id}` {_md_escape(c.title)} | {', '.join(c.paper_claims)} | {_md_escape(c.paper_number)} | "
                   f"{_md_escape(v.headline)} | {_md_escape(c.rule)} | **{v.status}** | {_md_escape(_regime_cell(v))} | {fig} |")
    out.append("")
    for section in meta.get("sections", []):
        out.append(section.rstrip())
        out.append("")
    out.append("## Controls and notes")
    for c, v in results:
        out.append(f"### `{c.id}`: {v.status}")
        for name, status in v.controls.items():
            out.append(f"- control *{name}*: {status}")
        for note in v.notes:
            out.append(f"- {note}")
        for f in v.figures:
            out.append(f"\n![{c.id}]({f})")
        out.append("")
    return "\n".join(out) + "\n"


def write_report(out_dir: Path, profile_name: str, results: list[tuple[Claim, Verdict]], meta: dict) -> Path:
    """Write report.md and report.json atomically into ``out_dir``; returns the markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "report.json", {
        "profile": profile_name, "meta": meta,
        "claims": [{"id": c.id, "paper_claims": list(c.paper_claims), "title": c.title, "paper_number": c.paper_number,
                    "rule": c.rule, **v.to_json()} for c, v in results],
    })
    md = out_dir / "report.md"
    atomic_write_bytes(md, render_markdown(profile_name, results, meta).encode())
    return md
