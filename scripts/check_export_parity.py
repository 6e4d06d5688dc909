"""Does an exported run tag a whole test file as `mlcls predict` does? The check behind the export promise.

For a finished run and a labelled (or unlabelled) file:
  1. `mlcls predict FILE --model RUN --precision fp32` gives the reference labels (and, through mlcls.api, the
     unrounded fp32 probabilities);
  2. onnx: `mlcls export RUN --out DIR`, then `mlcls predict FILE --model DIR` (ONNX Runtime);
  3. hf (runs trained with model.head transformers): `mlcls export RUN --format hf --out DIR`, then what the
     model card tells a newcomer: `transformers.pipeline("text-classification", model=DIR, top_k=None,
     truncation=True)` on the article text (the text fields stripped and joined by data.text_separator, a newline
     by default) and the rule in thresholds.json.
Per format: articles whose label sets differ from mlcls predict's, and the largest probability difference.

    python scripts/check_export_parity.py --run runs/NAME --data data/reuters/test.jsonl --formats onnx hf
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import machine, mlcls_command, write_block  # scripts/ is on sys.path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def predicted_labels(path: Path) -> list[set[str]]:
    return [set(json.loads(line)["labels"]) for line in path.read_text().splitlines()]


def mlcls_probs(model: Path, data: Path, batch_size: int = 64) -> tuple[list[str], np.ndarray]:
    """What `mlcls predict` scores, unrounded (predict writes 4 decimals): the records read as predict reads them."""
    from mlcls.api import FieldSpec, ReadPolicy, load_run, read_records, score_records

    loaded = load_run(model, precision="fp32")
    records = list(read_records(data, FieldSpec.from_config(loaded.config.data), policy=ReadPolicy("fail")))
    scores = np.concatenate([s for _, s in score_records(loaded, records, batch_size)])
    return loaded.labels.labels, scores


def pipeline_probs(folder: Path, data: Path, labels: list[str], fields: list[str], separator: str) -> np.ndarray:
    """The model card's recipe, with transformers alone."""
    import torch
    from transformers import pipeline

    device = 0 if torch.cuda.is_available() else -1
    classify = pipeline("text-classification", model=str(folder), top_k=None, truncation=True, device=device)
    texts = []
    for line in data.read_text().splitlines():
        row = json.loads(line)
        parts = [row[name].strip() for name in fields if isinstance(row.get(name), str) and row[name].strip()]
        texts.append(separator.join(parts))  # as the model card says: stripped, the empty ones left out
    out = classify(texts, batch_size=64)
    return np.array([[{r["label"]: r["score"] for r in article}[name] for name in labels] for article in out])


def card_rule(folder: Path, probs: np.ndarray, labels: list[str]) -> list[set[str]]:
    """thresholds.json applied as the model card shows (per-label cut-off, else the global one; min_labels)."""
    rule = json.loads((folder / "thresholds.json").read_text())
    if rule.get("rule") == "top_k":
        return [{labels[j] for j in np.argsort(-row)[: rule["top_k"]]} for row in probs]
    cutoffs = np.array([rule["per_label"].get(name, rule["threshold"]) for name in labels])
    chosen = probs >= cutoffs
    if rule.get("min_labels"):
        empty = ~chosen.any(1)
        chosen[np.flatnonzero(empty), probs[empty].argmax(1)] = True
    return [{labels[j] for j in np.flatnonzero(row)} for row in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--formats", nargs="+", choices=["onnx", "hf"], default=["onnx"])
    parser.add_argument("--work", type=Path, default=None, help="where exports and predictions go (default: temp)")
    parser.add_argument("--no-doc", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="parity-"))
    work.mkdir(parents=True, exist_ok=True)

    reference = work / "mlcls.jsonl"
    subprocess.run(mlcls_command("predict", str(args.data), "--model", str(args.run), "--precision", "fp32",
                                 "-o", str(reference)), check=True)
    ours = predicted_labels(reference)
    labels, probs = mlcls_probs(args.run, args.data)
    rows = []
    for fmt in args.formats:
        folder = work / f"export-{fmt}"
        subprocess.run(mlcls_command("export", str(args.run), "--format", fmt, "--out", str(folder)), check=True)
        start = time.perf_counter()
        if fmt == "onnx":
            out = work / "onnx.jsonl"
            subprocess.run(mlcls_command("predict", str(args.data), "--model", str(folder), "-o", str(out)),
                           check=True)
            theirs, their_probs = predicted_labels(out), mlcls_probs(folder, args.data)[1]
            how = "`mlcls predict --model EXPORT` (ONNX Runtime)"
        else:
            from mlcls.api import load_config

            data_config = load_config(args.run / "config.yaml").data
            their_probs = pipeline_probs(folder, args.data, labels, data_config.text_fields,
                                         data_config.text_separator)
            theirs = card_rule(folder, their_probs, labels)
            how = "`transformers.pipeline` + thresholds.json, as the model card shows"
        seconds = time.perf_counter() - start
        differ = sum(a != b for a, b in zip(ours, theirs, strict=True))
        gap = float(np.abs(their_probs - probs).max())
        rows.append(f"| {fmt} | {how} | {len(ours)} | {differ} | {gap:.1e} | {seconds:.0f} |")
        print(f"{fmt}: {differ} of {len(ours)} label sets differ; largest probability difference {gap:.2e}")
    table = "\n".join([
        f"Machine: {machine()}. Run `{args.run}`, file `{args.data}`; reference: `mlcls predict --precision fp32`. "
        f"Command: `python scripts/check_export_parity.py --run {args.run} --data {args.data} --formats "
        f"{' '.join(args.formats)}`.", "",
        "| export | scored by | articles | label sets that differ | largest probability difference | seconds |",
        "|---|---|---|---|---|---|", *rows])
    print(table)
    if not args.no_doc:
        write_block(DOC, f"export_parity_{args.run.name}", table, heading="## Exports tag as `mlcls predict` does")


if __name__ == "__main__":
    main()
