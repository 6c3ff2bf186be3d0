"""DAG parameters: one JSON-Schema rule per parameter, checked as a whole by the run's first task.

Airflow validates each ``Param`` on its own when a run is triggered and reports only the first problem; its trigger
form silently clamps a number to the schema's ``minimum``; and it accepts keys no parameter has. So the ``Param``s
given to Airflow carry the type, choices, default and a description that states the allowed range, and the first
task of the run (``check_params``) checks the run's whole conf against the full rules — unknown keys, ranges,
types — and fails at once, without retries, listing every problem.

Lists of integers (``rating_sets``, ``version_ids``): Airflow's trigger form shows an array parameter without an
``items`` type as a text box of one value per line and sends the lines as strings (``["1", "3"]``, its
``FieldStringArray``). ``check_params`` reads such lines (and ``"1, 3"`` on one line) as integers before checking,
and hands the checked values to the rest of the run (XCom ``params`` of ``check_params``; :func:`checked_params`),
so a task gets ``[1, 3]`` whichever way the run was started.
"""

from __future__ import annotations

from typing import Any

_RANGE_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "items",
               "minItems", "maxItems")  # fmt: skip


def _range_text(rule: dict[str, Any]) -> str:
    parts = []
    if "minimum" in rule:
        parts.append(f"≥ {rule['minimum']}")
    if "exclusiveMinimum" in rule:
        parts.append(f"> {rule['exclusiveMinimum']}")
    if "maximum" in rule:
        parts.append(f"≤ {rule['maximum']}")
    if "exclusiveMaximum" in rule:
        parts.append(f"< {rule['exclusiveMaximum']}")
    if "minLength" in rule:
        parts.append("not empty" if rule["minLength"] == 1 else f"at least {rule['minLength']} characters")
    if isinstance(rule.get("items"), dict) and "minimum" in rule["items"]:
        parts.append(f"each ≥ {rule['items']['minimum']}")
    return ", ".join(parts)


def dag_params(rules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``Param``s for ``DAG(params=…)`` from ``{name: {"default": …, "type": …, "minimum": …, "description": …}}``."""
    from airflow.sdk import Param

    params = {}
    for name, rule in rules.items():
        schema = {k: v for k, v in rule.items() if k not in ("default", "description", *_RANGE_KEYS)}
        allowed = _range_text(rule)
        description = " ".join(p for p in (rule.get("description", ""), f"Allowed: {allowed}." if allowed else "") if p)
        params[name] = Param(rule["default"], description=description or None, **schema)
    return params


def with_defaults(rules: dict[str, dict[str, Any]], defaults: dict[str, Any], setting: str) -> dict[str, dict]:
    """``rules`` with the defaults an operator set (a setting such as ``finetune_param_defaults``); a name that is
    not a parameter, or a default that breaks its rule, is a configuration error (the DAG shows an import error)."""
    from pony_tasks.config import ConfigError

    merged = {name: {**rule, "default": defaults.get(name, rule["default"])} for name, rule in rules.items()}
    problems = conf_problems(defaults, {name: rule["default"] for name, rule in merged.items()}, rules)
    if problems:
        raise ConfigError(f"setting {setting}: " + "; ".join(problems))
    return merged


def coerce(values: dict[str, Any], rules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``values`` with the form's text lines read as what their rule asks: for an array of integers, each string that
    is an integer (surrounding spaces, several per line with commas) becomes one, blank lines go; anything else is
    left for the check to name."""
    out = dict(values)
    for name, rule in rules.items():
        items = rule.get("items") if rule.get("type") == "array" else None
        value = out.get(name)
        if not (isinstance(items, dict) and items.get("type") == "integer" and isinstance(value, list)):
            continue
        read: list[Any] = []
        for item in value:
            if isinstance(item, str):
                for part in item.split(","):
                    text = part.strip()
                    if text:
                        read.append(int(text) if text.lstrip("+-").isdigit() else text)
            else:
                read.append(item)
        out[name] = read
    return out


def checked_params(ti: Any) -> dict[str, Any]:
    """The parameters ``check_params`` checked (lists of integers read as integers), in a task downstream of it."""
    return ti.xcom_pull(task_ids="check_params", key="params")


CHECKED_PARAMS_JSON = "{{ ti.xcom_pull(task_ids='check_params', key='params') | tojson }}"  # the same, in a template


def conf_problems(conf: dict[str, Any] | None, values: dict[str, Any], rules: dict[str, dict[str, Any]]) -> list[str]:
    """Every problem with a run's parameters: keys in ``conf`` that no parameter has, and each value in ``values``
    (the run's resolved params) that breaks its rule."""
    from jsonschema import Draft202012Validator

    problems = [f"unknown parameter {key!r} (known: {', '.join(sorted(rules))})"
                for key in sorted(conf or {}) if key not in rules]  # fmt: skip
    for name, rule in rules.items():
        schema = {k: v for k, v in rule.items() if k not in ("default", "description")}
        value = values.get(name, rule["default"])
        for error in sorted(Draft202012Validator(schema).iter_errors(value), key=str):
            where = "".join(f"[{p}]" for p in error.path)
            problems.append(f"{name}{where}: {error.message}")
    return problems


def check_params_task(rules: dict[str, dict[str, Any]]):
    """The run's first task: fails at once, without retries, naming every bad parameter; else logs and returns the
    parameters the run uses."""
    from airflow.sdk import task
    from airflow.sdk.exceptions import AirflowFailException

    @task(task_id="check_params", retries=0)
    def check_params(params=None, dag_run=None, ti=None) -> str:  # noqa: ANN001 - Airflow context
        values = coerce({name: params[name] for name in rules if name in params}, rules)
        problems = conf_problems(dag_run.conf, values, rules)
        if problems:
            raise AirflowFailException(f"{len(problems)} bad parameter(s) — nothing was run:\n"
                                       + "\n".join(f"  - {p}" for p in problems))  # fmt: skip
        ti.xcom_push(key="params", value=values)  # what the rest of the run uses (checked_params)
        summary = "parameters: " + ", ".join(f"{name}={values[name]!r}" for name in rules if name in values)
        print(summary)
        return summary

    return check_params()
