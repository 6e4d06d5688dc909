"""Rich renderings of metrics. Numbers are computed elsewhere; this module only lays them out."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

# Label names, run names and file paths are the user's: shown as typed, never read as rich markup (a topic named
# "[draft]" would vanish, one named "[/x]" would stop the report with a MarkupError).
plain = Text

SUMMARY_ROWS = [
    ("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("micro_precision", "micro precision"),
    ("micro_recall", "micro recall"), ("macro_precision", "macro precision"), ("macro_recall", "macro recall"),
    ("samples_f1", "samples-F1"), ("hamming_loss", "Hamming loss"), ("subset_accuracy", "subset accuracy"),
]
RANKING_ROWS = [
    ("precision_at_1", "P@1"), ("precision_at_3", "P@3"), ("precision_at_5", "P@5"), ("ndcg_at_3", "nDCG@3"),
    ("ndcg_at_5", "nDCG@5"), ("lrap", "label ranking avg. precision"), ("coverage_error", "coverage error"),
]


def summary_table(report: dict[str, Any], title: str) -> Table:
    table = Table(title=plain(title), show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, name in SUMMARY_ROWS:
        if key in report:
            table.add_row(name, f"{report[key]:.4f}")
    for key, name in RANKING_ROWS:
        if key in report.get("ranking", {}):
            table.add_row(name, f"{report['ranking'][key]:.4f}")
    for group, scores in report.get("frequency_groups", {}).items():
        value = " / ".join("-" if v is None else f"{v:.4f}" for v in (scores["micro_f1"], scores["macro_f1"]))
        table.add_row(f"{group} labels ({scores['labels']}): micro / macro-F1", value)
    none = report.get("no_gold_label", {})
    if none.get("articles"):
        table.add_row("articles with no gold label", str(none["articles"]))
        table.add_row("  of those, predicted empty", f"{none['share_predicted_empty']:.1%}")
        table.add_row("  false-alarm rate on them", f"{none['false_alarm_rate']:.4f}")
    if report.get("baseline_micro_f1") is not None:
        table.add_row("baseline micro-F1 (most frequent label)", f"{report['baseline_micro_f1']:.4f}")
    table.add_row("records", str(report["records"]))
    table.add_row("labels with gold support", str(report["labels_with_support"]))
    if "decision_rule" in report:
        table.add_row("decision rule", plain(report["decision_rule"]))
    return table


def per_label_table(report: dict[str, Any], top: int = 15, only: list[str] | None = None) -> Table:
    """Sorted by support; with many labels, the `top` most and least frequent (0: all), or just `only`."""
    rows = sorted(report["per_label"], key=lambda r: (-r["support"], r["label"]))
    if only:
        rows = [r for r in rows if r["label"] in set(only)]
    hidden = 0
    if top and len(rows) > 2 * top:
        hidden = len(rows) - 2 * top
        rows = rows[:top] + [None] + rows[-top:]
    title = "per label (by support)" + (f", {hidden} in the middle not shown (--top 0 shows all)" if hidden else "")
    table = Table(title=title, show_header=True, header_style="bold")
    for name, justify in (("label", "left"), ("support", "right"), ("predicted", "right"),
                          ("precision", "right"), ("recall", "right"), ("F1", "right")):
        table.add_column(name, justify=justify)
    for row in rows:
        if row is None:
            table.add_row("...", "", "", "", "", "")
            continue
        table.add_row(plain(row["label"]), str(row["support"]), str(row["predicted"]), f"{row['precision']:.3f}",
                      f"{row['recall']:.3f}", f"{row['f1']:.3f}")
    return table


# (path in the report, name, higher is better)
COMPARE_ROWS = [
    (("micro_f1",), "micro-F1", True), (("macro_f1",), "macro-F1", True),
    (("micro_precision",), "micro precision", True), (("micro_recall",), "micro recall", True),
    (("samples_f1",), "samples-F1", True), (("subset_accuracy",), "subset accuracy", True),
    (("hamming_loss",), "Hamming loss", False),
    (("ranking", "precision_at_1"), "P@1", True), (("ranking", "precision_at_3"), "P@3", True),
    (("ranking", "ndcg_at_5"), "nDCG@5", True), (("ranking", "lrap"), "LRAP", True),
    (("ranking", "coverage_error"), "coverage error", False),
    (("frequency_groups", "head", "macro_f1"), "head macro-F1", True),
    (("frequency_groups", "medium", "macro_f1"), "medium macro-F1", True),
    (("frequency_groups", "tail", "macro_f1"), "tail macro-F1", True),
    (("no_gold_label", "share_predicted_empty"), "no-gold articles predicted empty", True),
]


def _lookup(report: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = report
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, int | float) else None


def compare_table(names: list[str], reports: list[dict[str, Any]]) -> Table:
    """One column per run; the best value of each row in bold green."""
    table = Table(title="runs compared", show_header=True, header_style="bold")
    table.add_column("metric")
    for name in names:
        table.add_column(plain(name), justify="right")
    for path, label, higher in COMPARE_ROWS:
        values = [_lookup(r, path) for r in reports]
        present = [v for v in values if v is not None]
        if not present:
            continue
        best = max(present) if higher else min(present)
        cells = ["-" if v is None else (f"[bold green]{v:.4f}[/]" if v == best and len(reports) > 1 else f"{v:.4f}")
                 for v in values]
        table.add_row(label, *cells)
    table.add_row("decision rule", *[plain(r.get("decision_rule", "-")) for r in reports])
    return table


def stats_tables(report: dict[str, Any], top: int = 10) -> list[Table]:
    summary = Table(title=plain(str(report["file"])), show_header=True, header_style="bold")
    summary.add_column("what")
    summary.add_column("value", justify="right")
    summary.add_row("records", str(report["records"]))
    for size, count in report["labels_per_record"].items():
        share = count / max(1, report["records"])
        summary.add_row(f"records with {size} labels", f"{count} ({share:.1%})")
    summary.add_row("mean labels per record", f"{report['mean_labels_per_record']:.2f}")
    summary.add_row("distinct labels", str(report["distinct_labels"]))
    if report["not_annotated_entries"] or report["soft_entries"]:
        summary.add_row("not-annotated (null) entries", str(report["not_annotated_entries"]))
        summary.add_row("soft (0 < confidence < 1) entries", str(report["soft_entries"]))
    tables = [summary]

    rule = report["group_rule"]
    groups = Table(title=f"label groups (head: >= {rule['head_min']} articles, tail: <= {rule['tail_max']})",
                   show_header=True, header_style="bold")
    for name, justify in (("group", "left"), ("labels", "right"), ("articles per label", "right")):
        groups.add_column(name, justify=justify)
    for name, group in report["groups"].items():
        span = f"{group['articles_min']}-{group['articles_max']}" if group["labels"] else "-"
        groups.add_row(name, str(group["labels"]), span)
    tables.append(groups)

    if top and report["label_frequencies"]:
        freq = list(report["label_frequencies"].items())
        shown = freq if len(freq) <= 2 * top else freq[:top] + [("...", None)] + freq[-top:]
        labels = Table(title="label frequencies", show_header=True, header_style="bold")
        labels.add_column("label")
        labels.add_column("articles", justify="right")
        for name, count in shown:
            labels.add_row(plain(name), "" if count is None else str(count))
        tables.append(labels)

    if "tokens" in report:
        tokens = Table(title=plain(f"text length in tokens ({report.get('tokenizer', '')})"), show_header=True,
                       header_style="bold")
        tokens.add_column("statistic")
        tokens.add_column("tokens", justify="right")
        for key, value in report["tokens"].items():
            shown = f"{value:.1%}" if key == "share_truncated" else (f"{value:.1f}" if isinstance(value, float)
                                                                     else str(value))
            tokens.add_row(key, shown)
        tables.append(tokens)
    return tables
