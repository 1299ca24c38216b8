"""The report: report.md opens with what the run establishes (one table of claims: verdict with its qualifiers,
effect with its interval, floor or margin and its source, the smallest effect the seeds can detect, regime
numbers, controls), then one line for the checks, the definitions of every column, the profile's regime per role,
the sections of the claim modules and the details of every claim and check; report.json holds every number;
the terminal gets one line per claim and the tallies (docs/science.md section 6)."""

from __future__ import annotations

import datetime
import math
import subprocess
from pathlib import Path

from toy_models.checkpoint import atomic_write_bytes, atomic_write_json, library_versions
from verify.regime_record import regime_brief, regime_summary
from verify.registry import Claim, Verdict
from verify.rules import CONTROL_FAILED, ERROR, FAIL, INCONCLUSIVE, NOT_REPRODUCED, PASS, REPRODUCED

REGIME_COLUMNS = ("runs", "lr", "steps", "gain", "kl_to_base", "step_ratio", "drift_ratio", "walk_ratio",
                  "sign_consistency", "relative_update_norm", "sparsity_bf16_all", "sparsity_bf16_eligible",
                  "untouched_share")
CLAIM_ORDER = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, CONTROL_FAILED, ERROR)
CHECK_ORDER = (PASS, FAIL, CONTROL_FAILED, ERROR)

DEFINITIONS = """Columns. *verdict*: REPRODUCED / NOT REPRODUCED / INCONCLUSIVE by the rule written before the runs
(docs/science.md section 6); CONTROL FAILED when a positive control did not come out REPRODUCED or a negative
control or step-size placebo did (then the rule's own reading is in the details); ERROR when the claim crashed.
Qualifiers: *at the edge* (the estimate within one standard error of the floor or margin), *underpowered* (the
interval is too wide to resolve the floor or margin), others as the claim states them. *effect*: the deciding
statistic, mean with its 95 % interval over the units named (seeds unless stated). *floor / margin*: presence
needs the whole 95 % interval beyond the floor; absence needs the 90 % interval inside +-margin (two one-sided
tests); the threshold's source follows it. *detectable*: the smallest true effect these units find with 80 %
power (two-sided 5 % t-test). *regime*: per role, step ratio (median per-step change / half-ULP), drift ratio
(median |w_T - w_0| / half-ULP on the fp32 master), T (steps) and gain (held-out accuracy). *controls*: + positive
(must reproduce), - negative (effect absent by construction: must not), p step-size placebo (must not).
*sparsity_bf16_all / _eligible*: share of weights whose bf16 export is unchanged, over all weights / over those that
received a gradient; *untouched_share*: weights that never received a gradient; *relative_update_norm*: median over
matrices of ||dW||_F / ||W||_F. Published RLVR: step ratio about 0.016 to 0.033, drift ratio about 0.4,
||dW|| / ||W|| about 1e-3."""


def line(claim: Claim, v: Verdict) -> str:
    """One terminal line per claim or check: its verdict cell, id and headline."""
    return f"{v.cell:28s} {claim.id:28s} {v.headline}"


def tallies(results: list[tuple[Claim, Verdict]]) -> str:
    """'claims: 2 REPRODUCED, 9 NOT REPRODUCED, 4 INCONCLUSIVE, 1 CONTROL FAILED; checks: 9 PASS, 0 FAIL' (each kind
    counted apart; CONTROL FAILED and ERROR shown when they occur)."""
    parts = []
    for kind, order, always in (("claim", CLAIM_ORDER, CLAIM_ORDER[:3]), ("check", CHECK_ORDER, CHECK_ORDER[:2])):
        n = {s: sum(v.kind == kind and v.status == s for _, v in results) for s in order}
        parts.append(f"{kind}s: " + ", ".join(f"{n[s]} {s}" for s in order if s in always or n[s]))
    return "; ".join(parts)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt(x, fmt: str = ".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def outcome_text(o: dict) -> str:
    """'statistic mean [low, high]' of an outcome dict (Outcome.to_json)."""
    iv = o["interval"]
    if len(iv["values"]) < 2:
        return f"{o['statistic']} {_fmt(iv['mean'])}"
    return f"{o['statistic']} {_fmt(iv['mean'])} [{_fmt(iv['low'])}, {_fmt(iv['high'])}]"


def threshold_text(o: dict) -> str:
    """'> 0.36 (paper: ...)' or '+-0.01 (a priori)' of an outcome dict."""
    if o["kind"] == "margin":
        return f"+-{_fmt(o['threshold'])} ({o['source']})"
    if o["kind"] == "test":  # a test's p-value against its level (adapters.grid's sign test)
        return f"p < {_fmt(o['threshold'])} ({o['source']})"
    return f"floor {_fmt(o['threshold'])} ({o['source']})"


def _controls_cell(v: Verdict) -> str:
    sign = {"positive": "+", "negative": "-", "placebo": "p"}
    return ", ".join(f"{sign[c['kind']]} {'ok' if c['holds'] else 'FAILED'}" for c in v.controls) or "-"


def _regime_cell(v: Verdict) -> str:
    return regime_brief(v.regime) if v.regime else "-"


def header(profile_name: str, meta: dict) -> list[str]:
    """Title, commit, date, library versions, base model and seeds."""
    out = [f"# threegate report, profile `{profile_name}`", ""]
    out.append(f"Commit `{meta.get('commit', '?')}`, {meta.get('date', '?')}; "
               + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()) + ".")
    out.append(f"Base model: `{meta.get('base_dir', '?')}`; seeds {meta.get('seeds')}; base pass rates "
               + ", ".join(f"{k} {100 * v:.0f} %" for k, v in meta.get("base_pass_rates", {}).items()) + ".")
    return out + [""]


def claims_table(results: list[tuple[Claim, Verdict]]) -> list[str]:
    """The front table: one row per claim (not per check)."""
    out = ["| claim | verdict | effect (95 % interval) | floor / margin | detectable | regime | controls |",
           "|---|---|---|---|---|---|---|"]
    for c, v in results:
        if v.kind != "claim":
            continue
        effect = "; ".join(outcome_text(o) for o in v.outcomes.values()) or _md_escape(v.headline)
        floors = "; ".join(threshold_text(o) for o in v.outcomes.values()) or "-"
        detect = "; ".join(_fmt(o.get("detectable_effect")) for o in v.outcomes.values()) or "-"
        out.append(f"| `{c.id}` ({', '.join(c.paper_claims)}) {_md_escape(c.title)} | **{v.cell}** | {_md_escape(effect)} | "
                   f"{_md_escape(floors)} | {detect} | {_md_escape(_regime_cell(v))} | {_controls_cell(v)} |")
    return out


def checks_line(results: list[tuple[Claim, Verdict]]) -> str:
    """One line for the checks: instruments, never counted as reproducing the paper."""
    checks = [(c, v) for c, v in results if v.kind == "check"]
    if not checks:
        return ""
    return ("**Checks** (theorems, identities, instruments; never counted as reproducing the paper): "
            + ", ".join(f"`{c.id}` {v.cell}" for c, v in checks) + ".")


def regime_table(results: list[tuple[Claim, Verdict]]) -> list[str]:
    """Markdown table of the profile's regime: per role (matched runs, equal-size and placebo runs, controls,
    sweeps), medians over the distinct runs the claims used in that role."""
    records = list({r["run"]: r for _, v in results for r in v.runs}.values())
    if not records:
        return []
    summary = regime_summary(records)
    out = ["| role | " + " | ".join(REGIME_COLUMNS) + " |", "|---" * (len(REGIME_COLUMNS) + 1) + "|"]
    for role, m in summary.items():
        cells = ["-" if m.get(k) is None else f"{m[k]:.3g}" for k in REGIME_COLUMNS]
        out.append(f"| {role} | " + " | ".join(cells) + " |")
    return out


def details(c: Claim, v: Verdict) -> list[str]:
    """The detail section of one claim or check."""
    out = [f"### `{c.id}`: {v.cell}", "", f"*{_md_escape(c.title)}* ({', '.join(c.paper_claims)}); paper: "
           f"{_md_escape(c.paper_number)}.", "", f"- rule: {_md_escape(c.rule)}", f"- ours: {_md_escape(v.headline)}"]
    if v.rule_status and v.rule_status != v.status:
        out.append(f"- the rule alone read {v.rule_status}; {v.control_failure}")
    for name, o in v.outcomes.items():
        out.append(f"- decisive ({name}): {outcome_text(o)} -> {o['status']}; {threshold_text(o)}; detectable "
                   f"{_fmt(o.get('detectable_effect'))}")
    for name, o in v.descriptive.items():
        out.append(f"- descriptive ({name}): {outcome_text(o)} -> {o['status']} by the same rule")
    for ctl in v.controls:
        out.append(f"- control ({ctl['kind']}) *{ctl['name']}*: {ctl['status']}{'' if ctl['holds'] else ' (FAILED)'}")
    out += [f"- {n}" for n in v.notes]
    out += [f"\n![{c.id}]({f})" for f in v.figures]
    return out + [""]


def render_markdown(profile_name: str, results: list[tuple[Claim, Verdict]], meta: dict) -> str:
    """report.md text."""
    out = header(profile_name, meta)
    out += ["## What this run establishes", "", tallies(results) + ".", ""]
    out += claims_table(results) + [""]
    line_ = checks_line(results)
    if line_:
        out += [line_, ""]
    out += [DEFINITIONS, ""]
    table = regime_table(results)
    if table:
        out += ["## Regime of this profile, per role", "", *table, ""]
    for section in meta.get("sections", []):
        out += [section.rstrip(), ""]
    out += ["## Details", ""]
    for c, v in results:
        out += details(c, v)
    return "\n".join(out) + "\n"


def run_meta() -> dict:
    """Commit (with '+dirty' for local changes), UTC date and library versions for the report header."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", ""
    return {"commit": commit + ("+dirty" if dirty else ""),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "versions": library_versions()}


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


def est_text(x, fmt: str = "+.3f") -> str:
    """An Estimate as 'mean [low, high]', a float with ``fmt``, anything else (missing: '-') as text."""
    if hasattr(x, "text"):
        return x.text(fmt)
    if isinstance(x, (int, float)):
        return f"{x:{fmt}}"
    return "-" if x is None else str(x)


def figure_lines(verdict) -> list[str]:
    """Markdown image lines of a verdict's figures (paths relative to report.md)."""
    return [f"![{verdict.claim_id}]({f})" for f in verdict.figures]
