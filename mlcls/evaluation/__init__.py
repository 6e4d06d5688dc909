"""Evaluation: label sets against gold labels.

metrics.py   micro / macro F1 and friends (scikit-learn), frequency groups
evaluate.py  `mlcls eval`: every number of the report for one run
report.py    the report's tables (rich)
plots.py     the report's figures (matplotlib)
"""
