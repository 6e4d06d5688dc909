"""Lexical fusion (model.lexical: tfidf): the TF-IDF + logistic-regression model, saved without pickle, blended
with the transformer at a weight chosen on the tuning scores."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from rich.console import Console

from mlcls.config import load_config
from mlcls.data.labels import LabelSpace
from mlcls.data.records import FieldSpec, read_records
from mlcls.errors import RunDirError
from mlcls.inference.loading import load_run
from mlcls.inference.scoring import score_records
from mlcls.model.lexical import blend, choose_weight, fit_lexical, out_of_fold_lexical
from mlcls.run.lexical import load_lexical, save_lexical
from mlcls.training.entry import train
from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

quiet = Console(stderr=True, quiet=True)


def _tiny():
    records = [r for r in TINY_RECORDS] * 2
    texts = [r["text"] for r in records]
    space = LabelSpace(["cocoa", "grain", "oil"])
    targets = np.zeros((len(records), 3), dtype=np.float32)
    for i, r in enumerate(records):
        for name in r["labels"]:
            targets[i, space.index[name]] = 1.0
    return texts, targets, np.ones_like(targets)


@pytest.mark.parametrize("c", [None, 0.05])  # None: the default C (10), else model.lexical_c
def test_lexical_scores_are_scikit_learns_and_survive_save_and_load(tmp_path, c):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts, targets, mask = _tiny()
    model = fit_lexical(texts, targets, mask) if c is None else fit_lexical(texts, targets, mask, c)
    # Independent reference: the same scikit-learn pipeline, label by label, predict_proba.
    x = TfidfVectorizer(sublinear_tf=True, min_df=2).fit_transform(texts)
    reference = np.stack([LogisticRegression(C=c or 10.0, solver="liblinear", max_iter=200).fit(x, targets[:, j])
                          .predict_proba(x)[:, 1] for j in range(3)], axis=1)
    np.testing.assert_allclose(model.probabilities(texts), reference, atol=1e-5)
    model.weight = 0.3
    save_lexical(tmp_path, model)
    assert sorted(p.name for p in (tmp_path / "lexical").iterdir()) == ["settings.json", "vocabulary.json",
                                                                       "weights.safetensors"]  # no pickle
    assert json.loads((tmp_path / "lexical" / "settings.json").read_text())["C"] == (c or 10.0)
    loaded = load_lexical(tmp_path)
    assert loaded.weight == 0.3 and loaded.c == (c or 10.0)
    np.testing.assert_allclose(loaded.probabilities(texts + ["unseen words only"]),
                               model.probabilities(texts + ["unseen words only"]), atol=1e-6)


def test_a_label_without_positives_keeps_its_prior():
    texts, targets, mask = _tiny()
    targets[:, 2] = 0.0  # no 'oil' article
    model = fit_lexical(texts, targets, mask)
    assert not model.coef[2].any()
    assert model.probabilities(["crude oil barrel"])[0, 2] == pytest.approx(0.5 / (len(texts) + 1), rel=1e-4)


def test_a_label_no_article_annotates_is_left_to_the_encoder(tmp_path):
    # A label kept from a parent run (model.init_keep_labels) has no annotated row: a prior of 0 rows would be 0.5
    # for every article, and the blend would make the label fire on everything (issue 30's benchmark found it).
    texts, targets, mask = _tiny()
    mask[:, 2] = 0.0
    model = fit_lexical(texts, targets, mask)
    model.weight = 0.6
    assert model.abstain is not None and model.abstain.tolist() == [j == 2 for j in range(targets.shape[1])]
    encoder = np.full((2, targets.shape[1]), 0.01, dtype=np.float32)
    blended = model.blend(["crude oil barrel", "wheat harvest"], encoder)
    np.testing.assert_allclose(blended[:, 2], encoder[:, 2])
    assert (blended[:, [0, 1]] != encoder[:, [0, 1]]).any()  # the annotated labels are still blended
    save_lexical(tmp_path, model)
    np.testing.assert_array_equal(load_lexical(tmp_path).abstain, model.abstain)
    assert fit_lexical(*_tiny()).abstain is None  # every label annotated: nothing stored, files as before


def test_out_of_fold_scores_come_from_models_that_did_not_see_the_row():
    texts, targets, mask = _tiny()
    fold = np.arange(len(texts)) % 3
    oof = out_of_fold_lexical(texts, targets, mask, fold)
    held = fold == 1
    alone = fit_lexical([t for t, h in zip(texts, held, strict=True) if not h], targets[~held], mask[~held])
    np.testing.assert_allclose(oof[held], alone.probabilities([t for t, h in zip(texts, held, strict=True) if h]),
                               atol=1e-6)


def test_choose_weight_prefers_the_transformer_on_a_tie():
    enc, lex = np.array([[0.9, 0.1]]), np.array([[0.2, 0.8]])
    weight, tried = choose_weight(enc, lex, lambda p: 1.0)  # every weight scores the same
    assert weight == 0.0 and len(tried) == 9
    weight, _ = choose_weight(enc, lex, lambda p: float(p[0, 1]))  # more lexical, higher score
    assert weight == 0.8
    np.testing.assert_allclose(blend(enc, lex, 0.25), 0.75 * enc + 0.25 * lex)


def _mix(encoder, lexical, weight, space):
    """The blend written out independently of mlcls: a weighted mean of probabilities or of log-odds."""
    if space == "probability":
        return (1 - weight) * encoder + weight * lexical
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    return 1 / (1 + np.exp(-((1 - weight) * logit(encoder.astype(np.float64)) + weight * logit(lexical))))


def test_the_logit_blend_averages_log_odds_and_weight_0_is_the_encoder():
    enc = np.array([[0.9, 0.1, 0.5]], dtype=np.float32)
    lex = np.array([[0.2, 0.99, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(blend(enc, lex, 0.5, space="logit"), _mix(enc, lex, 0.5, "logit"), rtol=1e-6)
    # sure of a topic (0.99, odds 99) against the encoder's doubt (0.1, odds 1/9): the mean of log-odds is odds
    # sqrt(11) ~ 0.77, the mean of probabilities 0.545
    assert blend(enc, lex, 0.5, space="logit")[0, 1] == pytest.approx(11 ** 0.5 / (1 + 11 ** 0.5), rel=1e-5)
    assert blend(enc, lex, 0.5)[0, 1] == pytest.approx(0.545)
    np.testing.assert_array_equal(blend(enc, lex, 0.0, space="logit"), enc)
    sure = np.array([[1.0, 0.0, 0.5]], dtype=np.float32)  # saturated float32 probabilities stay finite
    assert np.isfinite(blend(sure, lex, 0.3, space="logit")).all()
    with pytest.raises(ValueError, match="unknown blend 'odds'"):
        blend(enc, lex, 0.5, space="odds")
    # choose_weight blends each candidate as prediction will
    _, tried = choose_weight(enc, lex, lambda p: float(p[0, 1]), space="logit")
    assert dict(tried)[0.5] == pytest.approx(float(_mix(enc, lex, 0.5, "logit")[0, 1]), rel=1e-6)


def test_the_blend_is_saved_and_a_run_from_before_the_key_blends_probabilities(tmp_path):
    model = fit_lexical(*_tiny()[:3])
    model.weight, model.blend_space = 0.4, "logit"
    save_lexical(tmp_path, model)
    settings_file = tmp_path / "lexical" / "settings.json"
    assert json.loads(settings_file.read_text())["blend"] == "logit"
    assert load_lexical(tmp_path).blend_space == "logit"
    settings = json.loads(settings_file.read_text())
    del settings["blend"]  # as runs saved before model.lexical_blend
    settings_file.write_text(json.dumps(settings))
    assert load_lexical(tmp_path).blend_space == "probability"
    settings_file.write_text(json.dumps(settings | {"blend": "odds"}))
    with pytest.raises(RunDirError, match="settings.json: blend 'odds' is not one of probability, logit"):
        load_lexical(tmp_path)


@pytest.mark.parametrize(("edit", "problem"), [
    # scikit-learn would open every article's text as a file path: a run folder must not make a server read files
    (lambda s: s["vectorizer"].update(input="filename"), "vectorizer setting 'input' is not one mlcls writes"),
    (lambda s: s["vectorizer"].update(sublinear_tf="yes"), "vectorizer setting 'sublinear_tf' has the wrong type"),
    (lambda s: s.update(weight=float("nan")), "weight must be a number in [0, 1], got nan"),  # every score NaN
    (lambda s: s.update(weight=7), "weight must be a number in [0, 1], got 7"),
    (lambda s: s.update(weight="0.5"), "weight must be a number in [0, 1], got '0.5'"),
    (lambda s: s.update(C=0), "C must be a positive number, got 0"),
    (lambda s: s.update(vectorizer=[]), "vectorizer must be an object of settings"),
])
def test_lexical_settings_are_checked_before_anything_in_them_is_used(tmp_path, edit, problem):
    model = fit_lexical(*_tiny()[:3])
    model.weight = 0.4
    save_lexical(tmp_path, model)
    settings_file = tmp_path / "lexical" / "settings.json"
    settings = json.loads(settings_file.read_text())
    edit(settings)
    settings_file.write_text(json.dumps(settings))
    with pytest.raises(RunDirError, match=re.escape(problem)):
        load_lexical(tmp_path)


def test_a_lexical_vocabulary_must_number_its_columns_once_each(tmp_path):
    model = fit_lexical(*_tiny()[:3])
    save_lexical(tmp_path, model)
    vocabulary_file = tmp_path / "lexical" / "vocabulary.json"
    vocabulary = json.loads(vocabulary_file.read_text())
    first, second = list(vocabulary)[:2]
    vocabulary_file.write_text(json.dumps(vocabulary | {second: vocabulary[first]}))
    with pytest.raises(RunDirError, match="vocabulary.json: the column numbers are not 0.."):
        load_lexical(tmp_path)


@pytest.mark.parametrize("space", ["probability", "logit"])  # model.lexical_blend
def test_a_fused_run_predicts_the_blend_its_rule_was_tuned_on(tmp_path, tiny_encoder, space):
    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS * 2)
    # One slow epoch: the encoder alone is imperfect, so the weight chosen is above 0 and every check below blends
    config = load_config(tiny_config(tmp_path, tiny_encoder, data),
                         ["train.epochs=1", "train.head_lr=1e-3", "model.lexical=tfidf", "model.lexical_c=3",
                          f"model.lexical_blend={space}", f"train.cache_dir={tmp_path / 'cache'}"],
                         {"output.name": "fused"})
    result = train(config, quiet)
    assert (result.run_dir / "lexical" / "weights.safetensors").is_file()
    assert load_lexical(result.run_dir).c == 3  # model.lexical_c reached the regressions
    weight = result.metrics["lexical_weight"]
    assert weight > 0 and result.metrics["lexical_blend"] == space
    assert set(result.metrics["lexical_weights_tried"]) == {f"{w / 10:.1f}" for w in range(9)}
    run = load_run(result.run_dir)
    assert run.lexical is not None and run.lexical.weight == weight and run.lexical.blend_space == space
    records = list(read_records(data, FieldSpec(text_fields=("text",))))
    texts = [r.text for r in records]
    fused = np.concatenate([s for _, s in score_records(run, records, 4)])
    lexical, run.lexical = run.lexical, None
    alone = np.concatenate([s for _, s in score_records(run, records, 4)])
    np.testing.assert_allclose(fused, _mix(alone, lexical.probabilities(texts), weight, space), atol=1e-5)
    run.lexical, lexical.weight = lexical, 0.5  # a weight that mixes, whatever the tiny run chose
    np.testing.assert_allclose(np.concatenate([s for _, s in score_records(run, records, 4)]),
                               _mix(alone, lexical.probabilities(texts), 0.5, space), atol=1e-5)
    with np.load(result.run_dir / "tuning_scores.npz", allow_pickle=False) as saved:
        np.testing.assert_allclose(saved["probs"], _mix(saved["encoder_probs"], saved["lexical_probs"], weight, space),
                                   atol=1e-5)
    card = (result.run_dir / "README.md").read_text()
    assert ("logit p_encoder" in card) == (space == "logit")
    assert f"(a mean of {'log-odds' if space == 'logit' else 'probabilities'})" in card
