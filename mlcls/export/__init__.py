"""`mlcls export RUN --format onnx|hf --out DIR [--quantize int8]`: a run as one ONNX graph for ONNX Runtime,
or (a run trained with model.head transformers) as a transformers model folder.

The graph goes from token ids and attention mask (and token type ids where the encoder and its tokenizer use
them) to per-label probabilities: the encoder, the pooling and the head are all inside, and batch and
sequence length are dynamic. It is produced by torch's maintained exporter (`torch.onnx.export(...,
dynamo=True)`, which translates the model through torch.export and onnxscript): no graph code is written by
hand. A cross-fitted run that predicts with its K fold models becomes one graph that averages their
probabilities, as `FoldEnsemble` does. The graph has two outputs: `probabilities` (batch x labels) and
`logits`, their log-odds (what mlcls's scoring takes, so an ONNX-backed run scores exactly as torch does).

DIR/ (file names: mlcls/run/layout.py)
  model.onnx          the graph (int8 weights with --quantize int8: onnxruntime's dynamic quantisation)
  tokenizer files     save_pretrained's (AutoTokenizer.from_pretrained(DIR) loads them)
  labels.json, thresholds.json, config.yaml, label_stats.json, metrics.json, provenance.json  from the run
  lexical/            the run's TF-IDF model, when it blends one in (mlcls blends it the same way)
  export.json         what was exported, how, and the check below
  README.md           the model card

Before the folder is written, the export is checked: the graph's probabilities on a few batches of random
token ids against the torch model's. fp32 must agree within 1e-4 (else nothing is written); for int8 the
difference is reported. The folder is built under a temporary name beside DIR and renamed at the end, so an
error or Ctrl-C leaves nothing half-written.

`mlcls predict --model DIR`, `mlcls eval DIR` and `mlcls serve DIR` run such a folder with ONNX Runtime
(mlcls/inference/onnx_run.py).

--format hf writes the run's AutoModelForSequenceClassification (config.json with id2label and problem_type
multi_label_classification, model.safetensors, the tokenizer with model_max_length = the run's max length) at
the top of DIR, with the run's small files, export.json and the model card: `pipeline("text-classification",
model=DIR, top_k=None, truncation=True)` scores as mlcls does (checked before the rename, within 1e-4). It
refuses, in one line, runs whose scores one such model cannot give: mlcls's mean-pooled head, K fold models, a
blended TF-IDF model. mlcls itself scores the source run, not an hf export (one line says so).

Modules: command.py (`export_run`, the choice of format), onnx.py (the graph and its folder), hf.py (the
transformers folder), staging.py (what both share: the target folder written whole or not at all, the
parity check's batches, the manifest and the card). Nothing else in mlcls imports this package.
"""
