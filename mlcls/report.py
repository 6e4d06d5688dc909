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
