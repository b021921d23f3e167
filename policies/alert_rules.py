"""The queue-depth alert policy, with the small PromQL reader it needs."""

from __future__ import annotations

import re
from typing import Iterator, NamedTuple, Optional

from pulumi_policy import PolicyResource, ReportViolation, StackValidationArgs

from contract import DEPLOYMENT_LABEL, MODEL_LABEL
from hpa_rules import QUEUE_METRICS
from resource_access import (
    PROMETHEUS_RULE,
    get,
    _is_model_server,
    items,
    _labels,
    _num,
    parse_duration,
    _schema,
    _seconds,
    settings,
)

# --------------------------------------------------------------------------- queue-depth alert


class Matcher(NamedTuple):
    """A PromQL label matcher, ``label op "value"``."""

    label: str
    op: str
    value: str

    def accepts(self, actual: str) -> bool:
        if self.op in ("=", "!="):
            return (actual == self.value) == (self.op == "=")
        try:
            # PromQL regexes are fully anchored RE2; Python's re agrees on what rules use.
            hit = re.fullmatch(self.value, actual) is not None
        except re.error:
            return True  # cannot tell: do not claim the model is excluded
        return hit == (self.op == "=~")

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


class Selector(NamedTuple):
    metric: str
    matchers: tuple[Matcher, ...]


_PROMQL_TOKEN = re.compile(
    r"""\s+
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<duration>[0-9]+(?:ms|[smhdwy])(?:[0-9]+(?:ms|[smhdwy]))*(?![A-Za-z0-9_:]))
    |(?P<number>(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(?![A-Za-z_:]))
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){}\[\],@])""",
    re.VERBOSE,
)
_AGGREGATORS = {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
                "count_values", "limitk", "limit_ratio"}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2"}
_COMPARISONS = {">", ">=", "<", "<=", "==", "!="}
_FLIPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}
_OPEN, _CLOSE = {"(", "{", "["}, {")", "}", "]"}
Token = tuple[str, str]


def promql_tokens(expr: str) -> list[Token]:
    """``(kind, text)`` tokens of a PromQL expression; ValueError on a character PromQL has not."""
    out, pos = [], 0
    while pos < len(expr):
        m = _PROMQL_TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read PromQL at {expr[pos:pos + 20]!r}")
        if m.lastgroup:
            out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return out


def _closing(tokens: list[Token], start: int) -> int:
    """Index of the bracket closing the one at ``start``."""
    depth = 0
    for i in range(start, len(tokens)):
        if tokens[i][1] in _OPEN and tokens[i][0] == "op":
            depth += 1
        elif tokens[i][1] in _CLOSE and tokens[i][0] == "op":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced brackets")


def _top_level(tokens: list[Token]) -> Iterator[int]:
    """Indexes of the tokens outside any bracket."""
    i = 0
    while i < len(tokens):
        yield i
        i = _closing(tokens, i) + 1 if tokens[i][0] == "op" and tokens[i][1] in _OPEN else i + 1


def _unwrap(tokens: list[Token]) -> list[Token]:
    while tokens and tokens[0] == ("op", "(") and _closing(tokens, 0) == len(tokens) - 1:
        tokens = tokens[1:-1]
    return tokens


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text[1:-1])


def _matchers(tokens: list[Token]) -> tuple[Matcher, ...]:
    out = []
    for i in range(len(tokens) - 2):
        (k1, label), (k2, op), (k3, value) = tokens[i:i + 3]
        if k1 == "ident" and k2 == "op" and op in ("=", "!=", "=~", "!~") and k3 == "string":
            out.append(Matcher(label, op, _unquote(value)))
    return tuple(out)


def promql_selectors(tokens: list[Token]) -> list[Selector]:
    """Every series selector in ``tokens`` (metric name and label matchers)."""
    out, i = [], 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if kind == "ident":
            if text in _LABEL_LISTS and following == ("op", "("):
                i = _closing(tokens, i + 1) + 1
            elif text in _AGGREGATORS or text in _KEYWORDS or text in _LABEL_LISTS or following == ("op", "(") \
                    or text.lower() in ("inf", "nan"):
                i += 1
            elif following == ("op", "{"):
                close = _closing(tokens, i + 1)
                out.append(Selector(text, _matchers(tokens[i + 2:close])))
                i = close + 1
            else:
                out.append(Selector(text, ()))
                i += 1
        elif (kind, text) == ("op", "{"):
            close = _closing(tokens, i)
            matchers = _matchers(tokens[i + 1:close])
            name = next((m.value for m in matchers if m.label == "__name__" and m.op == "="), None)
            if name:
                out.append(Selector(name, tuple(m for m in matchers if m.label != "__name__")))
            i = close + 1
        else:
            i += 1
    return out


def _number(tokens: list[Token]) -> Optional[float]:
    tokens = _unwrap(tokens)
    sign = 1.0
    if len(tokens) == 2 and tokens[0][1] in ("-", "+"):
        sign, tokens = (-1.0 if tokens[0][1] == "-" else 1.0), tokens[1:]
    if len(tokens) == 1 and tokens[0][0] == "number":
        text = tokens[0][1]
        return sign * (int(text, 16) if text.lower().startswith("0x") else float(text))
    return None


def _after_operator(tokens: list[Token]) -> list[Token]:
    """The right operand without ``bool`` and vector-matching clauses."""
    while tokens and tokens[0][0] == "ident" and (tokens[0][1] == "bool" or tokens[0][1] in _LABEL_LISTS):
        tokens = tokens[_closing(tokens, 1) + 1:] if len(tokens) > 1 and tokens[1] == ("op", "(") else tokens[1:]
    return tokens


class Threshold(NamedTuple):
    """A comparison ``series > value`` (or ``>=``) found in an alert expression."""

    series: list[Token]
    op: str
    value: float


def promql_thresholds(expr: str) -> list[Threshold]:
    """Every ``series >|>= number`` comparison of an alert expression, one per operand of its
    top-level ``and``/``or``/``unless`` (``number <|<= series`` counts too)."""
    tokens = _unwrap(promql_tokens(expr))
    operands, start = [], 0
    for i in _top_level(tokens):
        if tokens[i][0] == "ident" and tokens[i][1] in ("and", "or", "unless"):
            operands.append(tokens[start:i])
            start = i + 1
    operands.append(tokens[start:])
    out = []
    for operand in operands:
        operand = _unwrap(operand)
        comparisons = [i for i in _top_level(operand) if operand[i][0] == "op" and operand[i][1] in _COMPARISONS]
        if not comparisons:
            continue
        i = comparisons[-1]
        left, op, right = operand[:i], operand[i][1], _after_operator(operand[i + 1:])
        value = _number(right)
        if value is None and _number(left) is not None:
            left, op, value = right, _FLIPPED[op], _number(left)
        if value is not None and op in (">", ">="):
            out.append(Threshold(left, op, value))
    return out


class ModelServer(NamedTuple):
    name: str
    namespace: str
    deployment: str
    urn: str


class QueueAlert(NamedTuple):
    alert: str
    threshold: float
    for_seconds: float
    #: Matchers on each chain of selectors (through recording rules) reaching a queue metric.
    paths: list[tuple[Matcher, ...]]


QUEUE_ALERT_SCHEMA = _schema(
    queueMetrics={"type": "array", "items": {"type": "string"},
                  "default": QUEUE_METRICS,
                  "description": "Metrics counting requests waiting for a model (read through recording rules)."},
    maxThreshold={"type": "number", "minimum": 0, "default": 20,
                  "description": "The alert must fire at this many waiting requests or fewer (seed: > 20)."},
    maxFor={"type": "string", "default": "2m",
            "description": "Longest 'for' (Prometheus duration) before the alert fires (seed: > 2 minutes)."},
)


def _model_servers(resources: list[PolicyResource]) -> list[ModelServer]:
    out = []
    for r in resources:
        if not _is_model_server(r):
            continue
        model = _labels(r).get(MODEL_LABEL)
        if model:
            out.append(ModelServer(
                str(model),
                str(get(r.props, "metadata", "namespace", default="default")),
                str(get(r.props, "metadata", "name", default=r.name)),
                r.urn,
            ))
    return out


def _queue_paths(selector: Selector, records: dict[str, list[str]], queue_metrics: set[str],
                 seen: frozenset = frozenset()) -> list[tuple[Matcher, ...]]:
    if selector.metric in queue_metrics:
        return [selector.matchers]
    if selector.metric not in records or selector.metric in seen:
        return []
    paths = []
    for expr in records[selector.metric]:
        try:
            selectors = promql_selectors(promql_tokens(expr))
        except ValueError:
            continue
        for inner in selectors:
            for path in _queue_paths(inner, records, queue_metrics, seen | {selector.metric}):
                paths.append(selector.matchers + path)
    return paths


def _queue_alerts(resources: list[PolicyResource], queue_metrics: set[str]) -> list[QueueAlert]:
    records: dict[str, list[str]] = {}
    alerts = []
    for r in resources:
        if r.resource_type != PROMETHEUS_RULE:
            continue
        for group in items(get(r.props, "spec", "groups")):
            for rule in items(get(group, "rules")):
                if get(rule, "record"):
                    records.setdefault(get(rule, "record"), []).append(str(get(rule, "expr", default="")))
                elif get(rule, "alert"):
                    alerts.append(rule)
    out = []
    for rule in alerts:
        try:
            thresholds = promql_thresholds(str(get(rule, "expr", default="")))
            for_seconds = parse_duration(get(rule, "for", default="0"))
        except ValueError:
            continue
        for t in thresholds:
            paths = [p for s in promql_selectors(t.series) for p in _queue_paths(s, records, queue_metrics)]
            if paths:
                out.append(QueueAlert(str(get(rule, "alert")), t.value, for_seconds, paths))
    return out


def _excluding(path: tuple[Matcher, ...], model: ModelServer) -> Optional[Matcher]:
    """The first matcher on ``path`` that rejects ``model``'s series, if any."""
    actual = {"model": model.name, DEPLOYMENT_LABEL: model.deployment, "namespace": model.namespace}
    return next((m for m in path if m.label in actual and not m.accepts(actual[m.label])), None)


def validate_queue_alert(args: StackValidationArgs, report: ReportViolation) -> None:
    cfg = settings(args, QUEUE_ALERT_SCHEMA)
    queue_metrics = set(cfg["queueMetrics"])
    max_threshold, max_for = cfg["maxThreshold"], parse_duration(cfg["maxFor"])
    alerts = _queue_alerts(list(args.resources), queue_metrics)
    for model in _model_servers(list(args.resources)):
        reasons = []
        for a in alerts:
            problems = []
            if a.threshold > max_threshold:
                problems.append(f"fires above {_num(a.threshold)}, not {_num(max_threshold)}")
            if a.for_seconds > max_for:
                problems.append(f"waits {_seconds(a.for_seconds)} ('for'), more than {_seconds(max_for)}")
            excluded = [_excluding(p, model) for p in a.paths]
            if all(excluded):
                problems.append(f"its selectors exclude the model ({excluded[0]})")
            if not problems:
                break
            reasons.append(f"{a.alert} {'; '.join(problems)}")
        else:
            found = ". ".join(reasons) if reasons else (
                f"no alert compares {' or '.join(sorted(queue_metrics))} (directly or through recording rules) "
                "with a threshold")
            report(f"model {model.name} ({model.namespace}/{model.deployment}) has no queue-depth alert firing at "
                   f"more than {_num(max_threshold)} waiting requests for {cfg['maxFor']} or less: {found}.",
                   model.urn)
