"""`mlcls tune`: hyperparameter search over config keys, on Optuna (the optional `tune` extra).

    space.py, space_checks.py, schema.py   the search space: read, checked against the config before any trial
    study.py                               the Optuna study: storage, pruner, this process's liveness lock
    ledger.py                              --trials in all: slots, retries of trials whose process died
    objective.py                           one trial: a run in runs/tune-<study>/, pruned through training's hook
    base_trial.py                          the base config's own values queued as one of the trials
    best.py                                best.yaml, the best K runs kept, importances, the refit's config
    report.py                              the table of trials, live on a terminal
    search.py                              tune(): the loop that ties them together

Optuna is imported inside functions: `mlcls --help` does not load it.
"""
