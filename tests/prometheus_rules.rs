//! The ops kit in `deploy/` is tested like code:
//! - `promtool check rules` / `check config` / `test rules` on the Prometheus
//!   rules, their unit tests and the CI scrape configuration;
//! - `deploy/check.py`: the dashboard's queries use only exposed metrics, every
//!   alert has a runbook section and firing/quiet tests, the PrometheusRule is
//!   generated from the rules file, and the Kubernetes manifests are valid and
//!   consistent — including the ConfigMap's floodgate.toml, checked by the very
//!   binary these tests build (`floodgate config`).
//!
//! Needs `promtool` (Debian package `prometheus`) and python3 with PyYAML.
//! `FLOODGATE_PYTHON` picks the interpreter (CI uses a venv that also has
//! `kubernetes-validate`); with `FLOODGATE_REQUIRE_K8S_SCHEMAS=1` the schema
//! validation of the manifests is mandatory.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (promtool: apt-get install prometheus)"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn promtool(args: &[&str]) -> String {
    run(Command::new("promtool").args(args).current_dir(root()))
}

#[test]
fn prometheus_rules_are_valid() {
    let out = promtool(&["check", "rules", "deploy/prometheus/floodgate.rules.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn prometheus_rule_unit_tests_pass() {
    let out = promtool(&["test", "rules", "deploy/prometheus/floodgate.rules.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn prometheus_scrape_config_is_valid() {
    let out = promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn deploy_kit_checks_pass() {
    let python = std::env::var("FLOODGATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(python);
    cmd.arg(Path::new("deploy").join("check.py")).current_dir(root()).env("FLOODGATE_BIN", env!("CARGO_BIN_EXE_floodgate"));
    if std::env::var("FLOODGATE_REQUIRE_K8S_SCHEMAS").is_ok_and(|v| v == "1") {
        cmd.arg("--require-k8s-schemas");
    }
    let out = run(&mut cmd);
    assert!(out.contains("deploy checks: OK"), "{out}");
}
