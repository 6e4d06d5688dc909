"""Decisions: scores -> label sets, and how good they are. Training, eval, predict, serve and the model card
all use this package (as spaCy's scorer serves both training and `spacy evaluate`).

rules.py    decision rules (tuned cut-offs, top-k, at least one label) and applying them
tuning.py   tuning a rule on scores (never on test); `rule: auto` by held-out F1
metrics.py  micro / macro F1 and friends (scikit-learn), frequency groups
"""
