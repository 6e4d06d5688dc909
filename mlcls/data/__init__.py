"""Data: files -> validated records -> label matrices -> padded batches.

records.py  reading JSONL / CSV / Parquet into `Record`s, with per-line errors and skip counts
table_rows.py the rows of CSV / TSV (header checked) and Parquet files, for records.py
read_stats.py what a reader saw (records, skips by reason, blank lines): the notes after a command
ids.py      notes on ids that repeat in a file or across the training and validation sides
formats.py  which kind of file an input is (suffix, compression), and the readers of .json arrays and CSV
labels.py   the label vocabulary (`LabelSpace`), encoding to (targets, mask), training label statistics
batching.py tokenizing, length-grouped batches, padding
windows.py  model.long_text: an article as one window of token ids or several, and pooling their scores
stratify.py iterative stratification: parts in which every label keeps its share
stats.py    `mlcls data stats`: labels per record, frequency groups, text lengths
reuters.py  Reuters-21578: SGML parsing and the ModApte / ApteMod-90 splits
download.py fetching a file with a checksum (the Reuters tarball)
"""
