"""Rich renderings of metrics. Numbers are computed elsewhere; this module only lays them out."""

from __future__ import annotations

from typing import Any

from rich.table import Table

SUMMARY_ROWS = [
    ("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("micro_precision", "micro precision"),
    ("micro_recall", "micro recall"), ("macro_precision", "macro precision"), ("macro_recall", "macro recall"),
    ("samples_f1", "samples-F1"), ("hamming_loss", "Hamming loss"), ("subset_accuracy", "subset accuracy"),
]


def summary_table(report: dict[str, Any], title: str) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, name in SUMMARY_ROWS:
        if key in report:
            table.add_row(name, f"{report[key]:.4f}")
    if report.get("baseline_micro_f1") is not None:
        table.add_row("baseline micro-F1 (most frequent label)", f"{report['baseline_micro_f1']:.4f}")
    table.add_row("records", str(report["records"]))
    table.add_row("records with no gold label", str(report["records_without_gold_labels"]))
    table.add_row("labels with gold support", str(report["labels_with_support"]))
    if "threshold" in report:
        table.add_row("threshold", f"{report['threshold']:.2f}")
    return table


def per_label_table(report: dict[str, Any]) -> Table:
    table = Table(title="per label (by support)", show_header=True, header_style="bold")
    for name, justify in (("label", "left"), ("support", "right"), ("predicted", "right"),
                          ("precision", "right"), ("recall", "right"), ("F1", "right")):
        table.add_column(name, justify=justify)
    for row in sorted(report["per_label"], key=lambda r: (-r["support"], r["label"])):
        table.add_row(row["label"], str(row["support"]), str(row["predicted"]), f"{row['precision']:.3f}",
                      f"{row['recall']:.3f}", f"{row['f1']:.3f}")
    return table


def stats_tables(report: dict[str, Any], top: int = 10) -> list[Table]:
    summary = Table(title=f"{report['file']}", show_header=True, header_style="bold")
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
            labels.add_row(name, "" if count is None else str(count))
        tables.append(labels)

    if "tokens" in report:
        tokens = Table(title=f"text length in tokens ({report.get('tokenizer', '')})", show_header=True,
                       header_style="bold")
        tokens.add_column("statistic")
        tokens.add_column("tokens", justify="right")
        for key, value in report["tokens"].items():
            shown = f"{value:.1%}" if key == "share_truncated" else (f"{value:.1f}" if isinstance(value, float)
                                                                     else str(value))
            tokens.add_row(key, shown)
        tables.append(tokens)
    return tables
