"""PNG figures for `mlcls eval --plots DIR` (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlcls.atomic import WriteError, atomic_open, describe_os_error


def write_plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent that is a file, a folder that refuses writes: one line, as atomic_open says it
        raise WriteError(f"{out_dir}: cannot create the plots folder ({describe_os_error(exc)})") from None
    written = []

    rows = [r for r in report["per_label"] if r["support"] > 0 and "train_positives" in r]
    if rows:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.scatter([max(r["train_positives"], 0.8) for r in rows], [r["f1"] for r in rows], s=14, alpha=0.7)
        ax.set_xscale("log")
        ax.set_xlabel("training articles with the label (log scale)")
        ax.set_ylabel("test F1")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"per-label F1 against training frequency ({len(rows)} labels)")
        ax.grid(alpha=0.3)
        written.append(_save(fig, out_dir / "per_label_f1_vs_frequency.png"))

    arrays = report["_arrays"]
    annotated = arrays["mask"] > 0
    gold = (arrays["targets"] >= 0.5)[annotated]
    if gold.any():
        precision, recall, _ = precision_recall_curve(gold, arrays["probs"][annotated])
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.plot(recall, precision, lw=1.5, label="micro-averaged precision-recall")
        ax.scatter([report["micro_recall"]], [report["micro_precision"]], color="crimson", zorder=3,
                   label=f"operating point: {report['decision_rule']}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1.01)
        ax.set_ylim(0, 1.01)
        ax.legend(loc="lower left", fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_title(f"micro-F1 {report['micro_f1']:.3f} at the operating point")
        written.append(_save(fig, out_dir / "precision_recall_micro.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, dpi=110, format="png")
    plt.close(fig)
    return path



