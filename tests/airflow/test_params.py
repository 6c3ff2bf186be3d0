"""Parameters as the trigger form sends them (issue 27): a list of integers typed one per line arrives as strings;
the run reads them as integers, and names every value that is not one."""

from __future__ import annotations

from pony_airflow.params import coerce, conf_problems

RULES = {
    "rating_sets": {"default": [], "type": "array", "items": {"type": "integer", "minimum": 1}},
    "epochs": {"default": 300, "type": "integer", "minimum": 1},
    "tags": {"default": [], "type": "array", "items": {"type": "string"}},
}


def test_form_lines_become_integers_and_bad_ones_are_named() -> None:
    form = {"rating_sets": ["1", " 3 ", "", "4, 5"], "epochs": 10, "tags": ["7"]}  # FieldStringArray's lines
    values = coerce(form, RULES)
    assert values == {"rating_sets": [1, 3, 4, 5], "epochs": 10, "tags": ["7"]}, "a string list stays strings"
    assert conf_problems(form, values, RULES) == []
    assert coerce({"rating_sets": [2, 6]}, RULES) == {"rating_sets": [2, 6]}, "REST's integers pass through"
    bad = coerce({"rating_sets": ["-5", "two", "1.5"]}, RULES)
    problems = conf_problems({"rating_sets": []}, bad, RULES)
    assert bad["rating_sets"] == [-5, "two", "1.5"]
    assert sorted(problems) == ["rating_sets[0]: -5 is less than the minimum of 1", "rating_sets[1]: 'two' is not of "
                                "type 'integer'", "rating_sets[2]: '1.5' is not of type 'integer'"]  # fmt: skip
