"""Evaluation: a run's decisions on a labelled file, scored and reported (a consumer of finished runs; nothing
imports it). The metrics themselves are mlcls/decision/metrics.py, which training shares.

evaluate.py    `mlcls eval`: every number of the report for one run
data_stats.py  `mlcls data stats`: what a labelled file holds, in the encoder's tokens
report.py      the report's tables (rich)
plots.py       the report's figures (matplotlib)
"""
