"""The run directory: the one contract between training, which writes it, and every command that reads it
(eval, predict, serve, export). Below training and inference; imports neither.

layout.py       every file and folder name, declared once, and the layout documented once
lifecycle.py    claim (flock), stage, finish (rename, runs/latest); file-system errors in one line
find.py         the run a command names: finished, resumable, or why it is unfinished
files.py        one writer and one reader per small file (config, labels, stats, rule, metrics, log, scores,
                export manifest)
model_files.py  encoder/ and head.safetensors, written and loaded (safetensors only)
lexical.py      lexical/: the TF-IDF model's writer and reader, and its blend weight
validation.py   `validate_run`: every file a run needs, whole and consistent, before anything loads
checkpoint.py   training checkpoints, written whole or not at all
provenance.py   provenance.json: versions, command line, data files' sha256, the parent run (init_from)
parent.py       a run to start from (model.init_from): found, finished, compatible, its weights' sha256
card_facts.py   what a model card says, read once from the run's files (ModelCardData)
model_card.py   README.md: a Hugging Face model card of a run or an export, rendered from those facts and
                the usage snippets in card_templates/
"""
