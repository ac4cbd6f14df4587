"""The theory interface: verdicts, the two-level answer, errors, the compare table, caching."""

from __future__ import annotations

import pytest

import dyn
from dyn.errors import NotCheckable, PhaseError, StoreError
from dyn.theory import Claim, Outcome, Theory, Verdict, summarize
from dyn.theory.compare import COLUMNS, numbers_table


def _claim(check, hypotheses=()):
    return Claim("c", "stage 1", "statement", "predicted", check, hypotheses)


def test_evaluate_turns_only_undecidable_errors_into_not_checkable():
    def too_short(run):
        raise NotCheckable("run too short")

    def no_phase(run):
        raise PhaseError("no phase change")

    def corrupt(run):
        raise StoreError("r.zarr: cannot read site 'h' (corrupt or truncated data?)")

    assert _claim(too_short).evaluate(None).reason == "run too short"
    assert _claim(no_phase).evaluate(None).verdict == "not checkable"
    # Regression (issue 9, defect 5): a corrupt chunk became "not checkable"; it is an error.
    with pytest.raises(StoreError, match="corrupt"):
        _claim(corrupt).evaluate(None)


def test_outcome_without_a_decision_keeps_what_was_observed():
    v = _claim(lambda run: Outcome("bound 36 vs value 0.5", None, {"bound": 36.0}, reason="vacuous: ...")).evaluate(None)
    assert (v.verdict, v.observed, v.reason, v.numbers) == ("not checkable", "bound 36 vs value 0.5", "vacuous: ...",
                                                           {"bound": 36.0})


def test_hypotheses_met_from_the_theory_the_run_and_numbers():
    ok = _claim(lambda run: Outcome("x", True), ("a", "b")).evaluate(None, {"a": True, "b": False})
    assert ok.verdict == "holds" and ok.hypotheses_met is False and ok.unmet == ("b",)
    measured = _claim(lambda run: Outcome("x", True, unmet=("band",)), ("a",)).evaluate(None, {"a": True})
    assert measured.hypotheses_met is False and measured.unmet == ("band",)
    # a theory that reports failed hypotheses in its numbers (as huang2025-label-noise does) is read the same way
    other = _claim(lambda run: Outcome("x", False, {"hypotheses_failed": ["(i) high dimension"]})).evaluate(None)
    assert other.hypotheses_met is False and other.unmet == ("(i) high dimension",)
    assert _claim(lambda run: Outcome("x", True)).evaluate(None).hypotheses_met is True
    condition = Claim("assumption.x", "assumption", "s", "p", lambda run: Outcome("x", False)).evaluate(None)
    assert condition.hypotheses_met is None and condition.is_condition


def test_summary_separates_tests_from_predictions_outside_the_assumptions():
    verdicts = [
        Verdict("assumption.d", "assumption", "", "", "", "violated"),
        Verdict("proof.n", "condition", "", "", "", "violated"),
        Verdict("a", "stage 1", "", "", "", "holds", hypotheses_met=True),
        Verdict("b", "stage 1", "", "", "", "violated", hypotheses_met=False, unmet=("assumption.d",)),
        Verdict("c", "T1", "", "", "", "not checkable", hypotheses_met=False),
    ]
    s = summarize(verdicts)
    assert s["tests"] == {"holds": 1, "violated": 0, "not checkable": 0}
    assert s["outside"] == {"holds": 0, "violated": 1, "not checkable": 1}
    assert s["conditions"]["not met"] == 1 and s["conditions"]["unmet"] == ["assumption.d"]
    assert s["other conditions"]["unmet"] == ["proof.n"]


def test_compare_table_has_plain_columns_and_numbers_apart(synthetic):
    table = dyn.compare(synthetic("single"))
    assert tuple(table.columns) == COLUMNS
    for col in ("claim", "stage", "statement", "predicted", "observed", "verdict", "unmet", "reason"):
        assert all(isinstance(v, str) and not v.startswith("{") for v in table[col])
    assert str(table["hypotheses_met"].dtype) == "boolean"
    assert table.loc[table.stage == "assumption", "hypotheses_met"].isna().all()
    long = numbers_table(table)
    assert list(long.columns) == ["claim", "quantity", "value", "text"]
    row = long[(long.claim == "regime.winner") & (long.quantity == "max_rho")]
    assert row["value"].item() > 1
    assert sorted(table.attrs["summary"]) == ["conditions", "other conditions", "outside", "tests"]


def test_derived_quantities_are_computed_once_per_run(synthetic, monkeypatch):
    """Regression (issue 9): the empirical T1 with its bootstrap was recomputed about six times per compare."""
    import dyn.theory.huang2024.quantities as q

    calls = []
    real = q.fit_stage1
    monkeypatch.setattr(q, "fit_stage1", lambda *a, **k: calls.append(1) or real(*a, **k))
    run = synthetic("single")
    dyn.compare(run)
    dyn.compare(run)
    assert len(calls) == 2  # the signal and the noise curve, once each


def test_a_corrupt_chunk_is_an_error_not_a_verdict(tmp_path):
    path = tmp_path / "r.zarr"
    dyn.train(dyn.load_preset("huang2024-tiny", steps=20), path)
    chunk = [p for p in sorted((path / "h" / "noise_inner").glob("c.*")) if p.is_file()][0]
    chunk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(StoreError):
        dyn.compare(path)


def test_a_second_theory_plugs_in_with_hypotheses(synthetic):
    """A theory of one's own: claims name hypotheses, the theory says which hold; compare reports both levels."""

    class Demo(Theory):
        name = "test-demo-hypotheses"

        def applies_to(self, run):
            return None

        def hypotheses(self, run):
            return {"wide": False}

        def claims(self, run):
            rho = run.coefficients("h")["rho"].values
            return [Claim("assumption.wide", "assumption", "m large", "m >= 1000", lambda r: Outcome("m = 12", False)),
                    Claim("grows", "stage 1", "rho grows", "max rho increases",
                          lambda r: Outcome(f"max rho {rho.max():.3g}", bool(rho[-1].max() > rho[0].max())), ("wide",))]

    table = dyn.compare(synthetic("single"), theory=Demo())
    row = table.set_index("claim").loc["grows"]
    assert row["verdict"] == "holds" and not row["hypotheses_met"] and row["unmet"] == "wide"
    assert table.attrs["summary"]["outside"]["holds"] == 1 and table.attrs["summary"]["tests"]["holds"] == 0
