#!/usr/bin/env python3
"""Static checks of floodgate's ops kit (deploy/). Run from anywhere:

    python3 deploy/check.py            # all checks; exit 1 on any failure
    python3 deploy/check.py --write    # regenerate kubernetes/prometheusrule.yaml first
    python3 deploy/check.py --queries  # print every dashboard query and recording
                                       # rule, Grafana variables filled in, one per
                                       # line (input for the live Prometheus test)
    python3 deploy/check.py --selectors  # print every series selector (metric name
                                       # and label matchers) the dashboard, its
                                       # variables and the rules (alerts included)
                                       # use, one per line (the live test checks
                                       # that floodgate exports each of them)

Checks:
  * the Grafana dashboard is valid JSON, schemaVersion >= 36, unique panel ids,
    every panel and annotation uses the ${DS_PROMETHEUS} datasource variable
    (no hard-coded datasource uid), every query references only known floodgate
    metric names;
  * the rules: every alert has severity (critical|warning|info), summary,
    description and runbook_url -> an existing heading of deploy/RUNBOOK.md,
    every alert has a firing and a non-firing case in floodgate.rules.test.yml,
    every metric used is known;
  * kubernetes/prometheusrule.yaml embeds exactly floodgate.rules.yml;
  * the Kubernetes manifests: schema validation of built-in kinds with the
    `kubernetes_validate` package (PyPI) when importable (required with
    --require-k8s-schemas), structural checks of the CRDs (ServiceMonitor,
    PrometheusRule, ScaledObject), and cross references (Service -> pods,
    ServiceMonitor -> Service port, ConfigMap -> volume, grace period >
    kafka.shutdown_timeout, probes, non-root, no autoscaler on floodgate);
  * with FLOODGATE_BIN=path/to/floodgate, the ConfigMap's floodgate.toml, with
    the Deployment's literal FLOODGATE_* env applied, passes `floodgate config`;
  * the Dockerfile's user/port/binary agree with the Deployment.

Needs python3 with PyYAML (Debian: python3-yaml).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
DASHBOARD = DEPLOY / "grafana" / "floodgate-dashboard.json"
RULES = DEPLOY / "prometheus" / "floodgate.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "floodgate.rules.test.yml"
RUNBOOK = DEPLOY / "RUNBOOK.md"
K8S = DEPLOY / "kubernetes"
PROMRULE = K8S / "prometheusrule.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"

# The metrics floodgate exposes (README "Metrics"); histograms with suffixes.
METRICS = {
    "floodgate_events_total", "floodgate_events_rejected_total",
    "floodgate_events_duplicate_total", "floodgate_events_late_total",
    "floodgate_dead_letter_total", "floodgate_signals_total",
    "floodgate_campaigns_tracked", "floodgate_campaigns_viral",
    "floodgate_campaigns_shed_total", "floodgate_target_desired_replicas",
    "floodgate_target_forecast_rps", "floodgate_target_clicks_total", "floodgate_target_max_replicas",
    "floodgate_target_headroom",
    "floodgate_campaign_r", "floodgate_campaign_p_viral", "floodgate_consumer_lag",
    "floodgate_processing_latency_seconds_bucket", "floodgate_processing_latency_seconds_sum",
    "floodgate_processing_latency_seconds_count", "floodgate_watermark_timestamp_seconds",
    "floodgate_ready", "floodgate_build_info", "floodgate_partitions_assigned",
    "floodgate_unkeyed_events_total", "floodgate_rebalances_total", "up",
}

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2",
}

# Grafana variables -> values that make a query valid PromQL for Prometheus.
GRAFANA_VARS = {
    "$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h",
    "$job": ".*", "$instance": ".*", "$target": ".*",
}

failures = []


def fail(msg):
    failures.append(msg)


def metric_names(expr):
    """Metric names in a PromQL expression (a tokenizer good enough for ours)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    e = re.sub(r"\{[^}]*\}", " ", e)                       # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                      # ranges / subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\w+", " ", e)                           # Grafana variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        tok = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):                           # a function
            continue
        if tok.lower() in PROMQL_WORDS:
            continue
        # a duration unit or exponent glued to a number (e.g. 5m, 1e3)
        if m.start() > 0 and e[m.start() - 1].isdigit():
            continue
        names.add(tok)
    return names


def selectors(expr):
    """Series selectors (`name` or `name{matchers}`) of a PromQL expression,
    with the metric names metric_names() finds; matchers normalised to
    `label op "value"` joined by ", "."""
    out = set()
    names = metric_names(expr)
    e = re.sub(r"\[[^\]]*\]", " ", expr)
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?", e):
        if m.group(1) not in names:
            continue
        if m.group(2):
            matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")', m.group(2))
            out.add(m.group(1) + "{" + ", ".join(f"{k}{op}{v}" for k, op, v in matchers) + "}")
        else:
            out.add(m.group(1))
    return out


def all_selectors():
    """Every series selector of the dashboard (panels, annotations, variables)
    and the rules (recording rules and alert expressions), Grafana variables
    filled in; recording-rule outputs (names with ':') are left out."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [fill_vars(e) for _, e in dashboard_queries(dash)]
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.match(r"label_values\((.*),\s*\w+\)$", q or "")
            if m:
                exprs.append(fill_vars(m.group(1)))
    for g in yaml.safe_load(RULES.read_text())["groups"]:
        for r in g["rules"]:
            exprs.append(r["expr"])
    out = set()
    for e in exprs:
        out |= {s for s in selectors(e) if ":" not in s.split("{")[0]}
    return sorted(out)


def fill_vars(expr):
    for k in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_VARS[k])
    return expr


# ---------------------------------------------------------------- dashboard
def dashboard_queries(dash):
    """(where, expr) for every panel target and annotation."""
    out = []

    def walk(panels):
        for p in panels:
            if p.get("type") == "row":
                walk(p.get("panels", []))
                continue
            for t in p.get("targets", []):
                out.append((f'panel {p.get("id")} "{p.get("title")}" ref {t.get("refId")}', t.get("expr", "")))
    walk(dash.get("panels", []))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append((f'annotation "{a.get("name")}"', a["expr"]))
    return out


def check_dashboard():
    try:
        dash = json.loads(DASHBOARD.read_text())
    except (OSError, ValueError) as e:
        fail(f"{DASHBOARD}: not valid JSON: {e}")
        return None
    if dash.get("schemaVersion", 0) < 36:
        fail("dashboard: schemaVersion below 36")
    if not dash.get("uid") or not dash.get("title"):
        fail("dashboard: needs a uid and a title")
    tvars = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = tvars.get("DS_PROMETHEUS")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        fail("dashboard: needs a datasource variable DS_PROMETHEUS of type prometheus")
    for name in ("instance", "target"):
        if name not in tvars:
            fail(f"dashboard: template variable ${name} missing")
    ids = []
    n_panels = 0

    def walk(panels):
        nonlocal n_panels
        for p in panels:
            ids.append(p.get("id"))
            if "gridPos" not in p:
                fail(f'dashboard: panel {p.get("id")} has no gridPos')
            if p.get("type") == "row":
                walk(p.get("panels", []))
                continue
            n_panels += 1
            if p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
                fail(f'dashboard: panel {p.get("id")} "{p.get("title")}" does not use ${{DS_PROMETHEUS}}')
            if not p.get("targets"):
                fail(f'dashboard: panel {p.get("id")} "{p.get("title")}" has no query')
            for t in p.get("targets", []):
                if t.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
                    fail(f'dashboard: panel {p.get("id")} target {t.get("refId")} does not use ${{DS_PROMETHEUS}}')
    walk(dash.get("panels", []))
    if len(ids) != len(set(ids)):
        fail("dashboard: duplicate panel ids")
    for v in tvars.values():
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.match(r"label_values\((.*),\s*\w+\)$", q or "")
            if not m:
                fail(f'dashboard: variable ${v["name"]}: expected label_values(...), got {q!r}')
                continue
            for name in metric_names(m.group(1)) - METRICS:
                fail(f'dashboard: variable ${v["name"]} uses unknown metric {name}')
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr") and a.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            fail(f'dashboard: annotation "{a.get("name")}" does not use ${{DS_PROMETHEUS}}')
    queries = dashboard_queries(dash)
    for where, expr in queries:
        if not expr.strip():
            fail(f"dashboard: {where}: empty expr")
        unknown = metric_names(expr) - METRICS
        if unknown:
            fail(f"dashboard: {where}: unknown metric(s) {sorted(unknown)} in {expr!r}")
    print(f"dashboard: {n_panels} panels, {len(queries)} queries checked")
    return dash


# -------------------------------------------------------------------- rules
def runbook_anchors():
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            a = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            anchors.add(a)
    return anchors


def check_rules():
    rules = yaml.safe_load(RULES.read_text())
    tests = yaml.safe_load(RULE_TESTS.read_text())
    anchors = runbook_anchors()
    fired, quiet = set(), set()
    for group in tests.get("tests", []):
        for case in group.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = records = 0
    for g in rules["groups"]:
        for r in g["rules"]:
            used = metric_names(r["expr"]) - METRICS
            used = {n for n in used if ":" not in n}        # recording rules
            if used:
                fail(f'rules: {r.get("alert") or r.get("record")}: unknown metric(s) {sorted(used)}')
            if "record" in r:
                records += 1
                continue
            alerts += 1
            name = r["alert"]
            if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                fail(f"rules: {name}: severity must be critical, warning or info")
            ann = r.get("annotations", {})
            for k in ("summary", "description", "runbook_url"):
                if not ann.get(k):
                    fail(f"rules: {name}: annotation {k} missing")
            m = re.match(r"deploy/RUNBOOK\.md#(.+)$", ann.get("runbook_url", ""))
            if not m or m.group(1) not in anchors:
                fail(f'rules: {name}: runbook_url {ann.get("runbook_url")!r} has no matching heading in RUNBOOK.md')
            if name not in fired:
                fail(f"rules: {name}: no test case where it fires")
            if name not in quiet:
                fail(f"rules: {name}: no test case where it stays quiet")
    print(f"rules: {records} recording rules, {alerts} alerts checked")
    return rules


def prometheusrule_text(rules_text):
    body = "\n".join("  " + l if l.strip() else "" for l in rules_text.splitlines()
                     if not l.startswith("#"))
    return (
        "# GENERATED from deploy/prometheus/floodgate.rules.yml by\n"
        "# `python3 deploy/check.py --write`; edit that file, not this one.\n"
        "# The `release` label must match your Prometheus' ruleSelector.\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        "  name: floodgate\n"
        "  namespace: floodgate\n"
        "  labels:\n"
        "    app.kubernetes.io/name: floodgate\n"
        "    release: prometheus\n"
        "spec:\n" + body.strip("\n") + "\n"
    )


def check_prometheusrule(write):
    want = prometheusrule_text(RULES.read_text())
    if write:
        PROMRULE.write_text(want)
    if not PROMRULE.exists() or PROMRULE.read_text() != want:
        fail("kubernetes/prometheusrule.yaml is not generated from the current rules: run python3 deploy/check.py --write")
        return
    doc = yaml.safe_load(PROMRULE.read_text())
    if doc["spec"] != yaml.safe_load(RULES.read_text()):
        fail("kubernetes/prometheusrule.yaml: spec differs from floodgate.rules.yml")


# --------------------------------------------------------------- kubernetes
def load_manifests():
    docs = []
    for f in sorted(K8S.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d and d.get("kind") != "Kustomization":
                docs.append((f, d))
    return docs


def parse_duration_s(s):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", str(s))
    if not m:
        return None
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def check_kubernetes(require_schemas):
    docs = load_manifests()
    by_kind = {}
    for f, d in docs:
        for k in ("apiVersion", "kind"):
            if k not in d:
                fail(f"{f.name}: document without {k}")
        if not d.get("metadata", {}).get("name"):
            fail(f'{f.name}: {d.get("kind")} without metadata.name')
        by_kind.setdefault(d.get("kind"), []).append((f, d))

    # schema validation of built-in kinds
    try:
        import kubernetes_validate
    except ImportError:
        kubernetes_validate = None
        msg = "kubernetes: kubernetes_validate not importable (pip install kubernetes-validate)"
        if require_schemas:
            fail(msg)
        else:
            print(msg + "; schema validation skipped")
    if kubernetes_validate:
        version = kubernetes_validate.latest_version()
        n = 0
        for f, d in docs:
            if d["apiVersion"].split("/")[0] in ("monitoring.coreos.com", "keda.sh", "kustomize.config.k8s.io"):
                continue
            try:
                kubernetes_validate.validate(d, version, strict=True)
                n += 1
            except Exception as e:  # ValidationError, InvalidSchemaError, ...
                fail(f'{f.name}: {d["kind"]} {d["metadata"]["name"]}: {str(e).splitlines()[0]}')
        print(f"kubernetes: {n} built-in objects valid against the Kubernetes {version} schemas (strict)")

    dep = next((d for _, d in by_kind.get("Deployment", []) if d["metadata"]["name"] == "floodgate"), None)
    svc = next((d for _, d in by_kind.get("Service", []) if d["metadata"]["name"] == "floodgate"), None)
    cm = next((d for _, d in by_kind.get("ConfigMap", []) if d["metadata"]["name"] == "floodgate-config"), None)
    if not (dep and svc and cm):
        fail("kubernetes: Deployment, Service and ConfigMap named floodgate / floodgate-config are required")
        return
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    sel = dep["spec"]["selector"]["matchLabels"]
    if any(labels.get(k) != v for k, v in sel.items()):
        fail("deployment: selector does not match the pod labels")
    if any(labels.get(k) != v for k, v in svc["spec"]["selector"].items()):
        fail("service: selector does not match the floodgate pods")
    spec = pod["spec"]
    c = next(c for c in spec["containers"] if c["name"] == "floodgate")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ports.get("http") != 9898:
        fail("deployment: container port http must be 9898")
    if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        fail("deployment: livenessProbe must GET /healthz")
    if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        fail("deployment: readinessProbe must GET /readyz")
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        fail("deployment: pod securityContext.runAsNonRoot must be true")
    csc = c.get("securityContext", {})
    if not csc.get("readOnlyRootFilesystem") or csc.get("allowPrivilegeEscalation") is not False:
        fail("deployment: container must have readOnlyRootFilesystem and no privilege escalation")
    if not c.get("resources", {}).get("requests") or not c.get("resources", {}).get("limits"):
        fail("deployment: resources.requests and resources.limits required")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    if "FLOODGATE_KAFKA__BROKERS" not in env:
        fail("deployment: FLOODGATE_KAFKA__BROKERS env missing")
    cfg_vol = [v for v in spec.get("volumes", []) if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
    if not cfg_vol:
        fail("deployment: no volume from the floodgate-config ConfigMap")
    else:
        mount = next((m for m in c.get("volumeMounts", []) if m["name"] == cfg_vol[0]["name"]), None)
        args = c.get("args", [])
        if not mount or "--config" not in args or not args[args.index("--config") + 1].startswith(mount["mountPath"] + "/"):
            fail("deployment: `--config` must point into the ConfigMap mount")
    toml_text = cm["data"].get("floodgate.toml", "")
    try:
        cfg = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as e:
        fail(f"configmap: floodgate.toml is not TOML: {e}")
        cfg = {}
    shutdown = parse_duration_s(cfg.get("kafka", {}).get("shutdown_timeout", "10s")) or 10
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if not grace > shutdown + 10:
        fail(f"deployment: terminationGracePeriodSeconds {grace} must exceed kafka.shutdown_timeout {shutdown}s + 10s")
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for f, d in by_kind.get(kind, []):
            ref = d["spec"].get("scaleTargetRef", {})
            if ref.get("name") == "floodgate":
                fail(f"{f.name}: floodgate itself must not be autoscaled (it scales by partitions)")

    # ServiceMonitor -> Service port
    for f, d in by_kind.get("ServiceMonitor", []):
        names = {p.get("name") for p in svc["spec"]["ports"]}
        if any(svc["metadata"]["labels"].get(k) != v for k, v in d["spec"]["selector"]["matchLabels"].items()):
            fail(f"{f.name}: selector does not match the floodgate Service labels")
        for ep in d["spec"]["endpoints"]:
            if ep.get("port") not in names:
                fail(f'{f.name}: endpoint port {ep.get("port")!r} is not a Service port name')
    if not by_kind.get("ServiceMonitor") and not by_kind.get("PodMonitor"):
        fail("kubernetes: a ServiceMonitor or PodMonitor is required")
    if not by_kind.get("PrometheusRule"):
        fail("kubernetes: PrometheusRule missing")

    # KEDA ScaledObject
    for f, d in by_kind.get("ScaledObject", []):
        s = d["spec"]
        if d["apiVersion"] != "keda.sh/v1alpha1":
            fail(f"{f.name}: apiVersion must be keda.sh/v1alpha1")
        if not s.get("scaleTargetRef", {}).get("name"):
            fail(f"{f.name}: spec.scaleTargetRef.name missing")
        if s.get("minReplicaCount", 0) > s.get("maxReplicaCount", 100):
            fail(f"{f.name}: minReplicaCount > maxReplicaCount")
        proms = [t for t in s.get("triggers", []) if t.get("type") == "prometheus"]
        if not proms:
            fail(f"{f.name}: no prometheus trigger")
        for t in s.get("triggers", []):
            for k, v in t.get("metadata", {}).items():
                if not isinstance(v, str):
                    fail(f"{f.name}: trigger {t.get('name', t['type'])}: metadata.{k} must be a string (KEDA rejects numbers)")
            if t.get("metricType") not in (None, "AverageValue", "Value", "Utilization"):
                fail(f"{f.name}: trigger metricType {t.get('metricType')!r} invalid")
        for t in proms:
            md = t.get("metadata", {})
            for k in ("serverAddress", "query", "threshold"):
                if not md.get(k):
                    fail(f"{f.name}: prometheus trigger without {k}")
            unknown = metric_names(md.get("query", "")) - METRICS
            if unknown:
                fail(f"{f.name}: query uses unknown metric(s) {sorted(unknown)}")
            if "floodgate_target_desired_replicas" in md.get("query", "") and t.get("metricType") != "AverageValue":
                fail(f"{f.name}: a desired-replicas query needs metricType AverageValue (replicas = value / threshold)")
        if s.get("fallback") and any(t.get("metricType", "AverageValue") != "AverageValue" for t in proms):
            fail(f"{f.name}: KEDA fallback only works with AverageValue triggers")

    # the real binary accepts the ConfigMap with the Deployment's env
    fbin = os.environ.get("FLOODGATE_BIN")
    if fbin:
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as tf:
            tf.write(toml_text)
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("FLOODGATE_")}
        run_env.update({k: v for k, v in env.items() if k.startswith("FLOODGATE_") and v is not None})
        r = subprocess.run([fbin, "config", "--config", tf.name], env=run_env, capture_output=True, text=True)
        os.unlink(tf.name)
        if r.returncode != 0:
            fail(f"configmap: `floodgate config` rejects floodgate.toml: {r.stderr.strip()}")
        else:
            eff = tomllib.loads(r.stdout)
            if eff["kafka"]["brokers"] != env["FLOODGATE_KAFKA__BROKERS"]:
                fail("configmap: FLOODGATE_KAFKA__BROKERS did not override kafka.brokers")
            if eff["http"]["listen"].split(":")[-1] != "9898":
                fail("configmap: http.listen must use port 9898")
            print("configmap: floodgate.toml accepted by `floodgate config` with the Deployment's env")
    else:
        print("configmap: FLOODGATE_BIN not set; `floodgate config` check skipped")

    # Dockerfile agrees with the Deployment
    df = DOCKERFILE.read_text()
    uid = spec.get("securityContext", {}).get("runAsUser")
    if not re.search(rf"^USER {uid}(:\d+)?$", df, re.M):
        fail(f"Dockerfile: USER must be the Deployment's runAsUser {uid}")
    if not re.search(r"^EXPOSE 9898$", df, re.M):
        fail("Dockerfile: EXPOSE 9898 missing")
    if "cargo build --release --locked --bin floodgate" not in df:
        fail("Dockerfile: must build with `cargo build --release --locked --bin floodgate`")
    print(f"kubernetes: {len(docs)} objects cross-checked")


def main():
    args = set(sys.argv[1:])
    if "--queries" in args:
        dash = json.loads(DASHBOARD.read_text())
        for _, expr in dashboard_queries(dash):
            print(" ".join(fill_vars(expr).split()))
        for g in yaml.safe_load(RULES.read_text())["groups"]:
            for r in g["rules"]:
                if "record" in r:
                    print(r["record"])
        return 0
    if "--selectors" in args:
        for sel in all_selectors():
            print(sel)
        return 0
    check_dashboard()
    check_rules()
    check_prometheusrule("--write" in args)
    check_kubernetes("--require-k8s-schemas" in args)
    for f in failures:
        print("FAIL:", f)
    print("deploy checks: OK" if not failures else f"deploy checks: {len(failures)} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
