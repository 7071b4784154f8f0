//! The `floodgate` command line. Errors are reported with `anyhow` here and
//! only here; the library returns typed errors.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use floodgate::config::Config;
use floodgate::engine::model_file::LearnedModel;
use floodgate::engine::Engine;
use floodgate::replay::replay_threads;
use floodgate::signal::Signal;
use floodgate::simulate::{demo_scenario, simulate, standard_scenarios, SimSpec};

/// Predictive scale-ahead for mass mailings: estimates each campaign's
/// pass-along reproduction number R from send/click/forward events and tells
/// autoscalers to add capacity before the wave arrives.
#[derive(Parser, Debug)]
#[command(name = "floodgate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay an NDJSON event log through the engine; signals (CloudEvents
    /// NDJSON) to stdout, a summary to stderr.
    Replay(ReplayArgs),
    /// Write a synthetic event log with known R (NDJSON) to stdout or a file.
    Simulate(SimulateArgs),
    /// Print the effective configuration (defaults, file and FLOODGATE_*
    /// overrides applied, validated) as TOML.
    Config(ConfigArgs),
    /// Replay an event log through the engine and through reactive baselines
    /// (HPA-like, trend) on a capacity model; prints overload and cost per
    /// policy and target, optionally as an HTML report and JSON.
    Backtest(BacktestArgs),
    /// Run the Kafka consumer-group service: input topics → engine per
    /// partition → signal topic, with /metrics, /healthz, /readyz and
    /// /api/campaigns over HTTP. Stops on SIGTERM/SIGINT.
    Run(RunArgs),
    /// Publish an NDJSON event log to a Kafka topic, keyed by campaign, with
    /// message timestamps set to the event times (demos, load, tests).
    Produce(ProduceArgs),
    /// Replay an event log and score, after the fact, what floodgate knew at
    /// each bin step (click forecasts, final size, R, onsets) against what
    /// happened, next to baselines; a table to stdout, optionally JSON and HTML.
    Evaluate(EvaluateArgs),
    /// Show a learned model file (`--model` of replay, backtest, evaluate):
    /// per target and audience, the response delay, the click-through and
    /// what it was learned from.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Convert real re-share cascades (`../shared/data/real/*/events.ndjson`)
    /// into floodgate events: roots spread over one day, delays kept, sorted
    /// by time (see README "On real cascades").
    ConvertCascades(ConvertCascadesArgs),
}

#[derive(Subcommand, Debug)]
enum ModelCommand {
    /// Print a model file readably (or as JSON with `--json`).
    Show(ModelShowArgs),
}

#[derive(clap::Args, Debug)]
struct ModelShowArgs {
    /// The model file.
    #[arg(long, default_value = "floodgate-model.json")]
    model: PathBuf,
    /// TOML configuration whose priors the learned values are read against
    /// (defaults apply to every key not given).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the learned values as JSON (one document) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct EvaluateArgs {
    /// NDJSON event log, or `-` for stdin.
    #[arg(default_value = "-")]
    path: PathBuf,
    /// TOML configuration (defaults apply to every key not given).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Forecast horizons to score, comma-separated; whole bins; the engine
    /// forecasts over the largest.
    #[arg(long, default_value = "5m,15m,30m")]
    horizons: String,
    /// Write every number and the per-window rows as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report (inline SVG) here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Learned model file: loaded at start if it exists (a missing file:
    /// start from the configured priors), written at the end (to a
    /// temporary file, then renamed).
    #[arg(long)]
    model: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ConvertCascadesArgs {
    /// Cascade NDJSON (uncompressed), or `-` for stdin.
    #[arg(default_value = "-")]
    path: PathBuf,
    /// The day the roots are spread over (its midnight, RFC 3339).
    #[arg(long, default_value = "2026-03-02T00:00:00Z")]
    day: String,
    /// Re-shares later than this after their root are dropped.
    #[arg(long, default_value = "24h", value_parser = duration_ms)]
    max_age: i64,
    /// `recipients` of every root send (the data do not give it).
    #[arg(long, default_value_t = 5000)]
    recipients: u64,
    /// `target` of every event.
    #[arg(long, default_value = "social")]
    target: String,
    /// Write here instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ConfigArgs {
    /// TOML configuration to check and print with its defaults filled in.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// TOML configuration (every key also settable as FLOODGATE_<SECTION>__<KEY>).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ProduceArgs {
    /// NDJSON file, or `-` for stdin.
    #[arg(default_value = "-")]
    path: PathBuf,
    /// Topic to publish to.
    #[arg(long)]
    topic: String,
    /// Bootstrap servers (default: `kafka.brokers` of the configuration).
    #[arg(long)]
    brokers: Option<String>,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long)]
    partitions: Option<i32>,
    /// TOML configuration (for `kafka.brokers` and `kafka.properties`).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct BacktestArgs {
    /// NDJSON event log, or `-` for stdin.
    #[arg(default_value = "-")]
    path: PathBuf,
    /// TOML configuration: `[planner]`/`[targets.*]` give the capacity model
    /// (requests_per_click, capacity_per_replica, min/max_replicas, baseline_rps).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write a self-contained HTML report (charts, tables) here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write the numbers (and per-minute series) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Replica start-up delay: a replica requested at t serves from t + startup.
    #[arg(long, default_value = "90s", value_parser = duration_ms)]
    startup: i64,
    /// Age of the freshest request-rate sample the reactive and trend policies see.
    #[arg(long, default_value = "60s", value_parser = duration_ms)]
    metrics_delay: i64,
    /// Scale-down stabilisation window of the reactive and trend policies (HPA default).
    #[arg(long, default_value = "5m", value_parser = duration_ms)]
    stabilisation: i64,
    /// Decision period of the reactive and trend policies (HPA sync period).
    #[arg(long, default_value = "15s", value_parser = duration_ms)]
    sync: i64,
    /// Regression window of the trend policy (predict_linear).
    #[arg(long, default_value = "10m", value_parser = duration_ms)]
    trend_window: i64,
    /// Utilisation the reactive and trend policies aim at [default: 0.8; 1/(1+planner.headroom) with learn_headroom = false].
    #[arg(long)]
    target_utilisation: Option<f64>,
    /// Model whole UTC days around the log (baseline_rps outside it), so
    /// capacity paid around the clock counts.
    #[arg(long)]
    day: bool,
    /// Also run the cost–overload frontier: reactive at utilisation 0.5–0.9,
    /// trend, floodgate at several horizons/quantiles/headrooms and the
    /// perfect-foresight oracle, for start-up 30s, 90s, 5m and 10m.
    #[arg(long)]
    sweep: bool,
    /// Learned model file: every engine replay (the backtest's and the
    /// sweep's) starts from it if it exists (a missing file: from the
    /// configured priors); the backtest's replay is written back at the end
    /// (to a temporary file, then renamed).
    #[arg(long)]
    model: Option<PathBuf>,
}

fn duration_ms(s: &str) -> Result<i64, String> {
    floodgate::time::parse_duration_ms(s)
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
    /// One CloudEvents JSON object per line.
    Json,
    /// An aligned table for people.
    Table,
}

#[derive(clap::Args, Debug)]
struct ReplayArgs {
    /// NDJSON file, or `-` for stdin.
    #[arg(default_value = "-")]
    path: PathBuf,
    /// TOML configuration (defaults apply to every key not given).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also emit a `floodgate.estimate` per campaign per bin.
    #[arg(long)]
    estimates: bool,
    /// Write counters (accepted, rejected, duplicates, late, campaigns, signals) as JSON here.
    #[arg(long)]
    stats: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Print at most this many rejected lines to stderr (all are counted).
    #[arg(long, default_value_t = 20)]
    max_errors: u64,
    /// Threads decoding lines (default: the number of cores); the engine
    /// runs on one more. Output is the same for every value; 1 decodes on
    /// the engine's thread.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: Option<u32>,
    /// Learned model file: loaded at start if it exists (a missing file:
    /// start from the configured priors), written at the end (to a
    /// temporary file, then renamed).
    #[arg(long)]
    model: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Scenario {
    /// Three campaigns: viral, flat, and one turning viral (the shipped example).
    Demo,
    /// Eleven campaigns with R from 0.3 to 2.5 and one jumping 0.5 → 1.8.
    Standard,
    /// Eleven campaigns with lognormal delays (sd > mean), three audiences,
    /// R 0.2–0.95 and two super-critical (1.3, 1.6).
    HeavyTailed,
}

#[derive(clap::Args, Debug)]
struct SimulateArgs {
    /// Random seed (same seed, same log).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Which campaigns.
    #[arg(long, value_enum, default_value_t = Scenario::Demo)]
    scenario: Scenario,
    /// A JSON `SimSpec` file instead of a built-in scenario.
    #[arg(long, conflicts_with = "scenario")]
    spec: Option<PathBuf>,
    /// Send time of the first campaign (RFC 3339).
    #[arg(long, default_value = "2026-03-02T08:00:00Z")]
    start: String,
    /// Probability that a click is written twice (same id).
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// Write here instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Also write the simulated truth (the spec) as JSON here.
    #[arg(long)]
    truth: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => cmd_replay(args),
        Command::Simulate(args) => cmd_simulate(args),
        Command::Config(args) => cmd_config(args),
        Command::Backtest(args) => cmd_backtest(args),
        Command::Run(args) => cmd_run(args),
        Command::Produce(args) => cmd_produce(args),
        Command::Evaluate(args) => cmd_evaluate(args),
        Command::ConvertCascades(args) => cmd_convert_cascades(args),
        Command::Model(ModelCommand::Show(args)) => cmd_model_show(args),
    };
    if let Err(e) = result {
        // A closed stdout (e.g. `| head`) is not an error worth a message.
        if e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) {
            std::process::exit(0);
        }
        eprintln!("floodgate: error: {e:#}");
        std::process::exit(2);
    }
}

fn load_config(path: Option<&Path>) -> Result<Arc<Config>> {
    let cfg = Config::load(path).with_context(|| match path {
        Some(p) => format!("loading configuration {}", p.display()),
        None => "loading configuration from defaults and FLOODGATE_* variables".to_string(),
    })?;
    Ok(Arc::new(cfg))
}

/// The learned model `--model` names, if the file exists; a missing file
/// means starting from the configured priors (said on stderr).
fn read_model(path: Option<&Path>) -> Result<Option<LearnedModel>> {
    let Some(p) = path else { return Ok(None) };
    match std::fs::read_to_string(p) {
        Ok(text) => LearnedModel::from_json(&text).map(Some).with_context(|| format!("--model {}", p.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            eprintln!("floodgate: --model {}: no such file; starting from the configured priors", p.display());
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read --model {}", p.display())),
    }
}

/// Writes the learned model to `path`: to `path.tmp` first, then renamed
/// over it, so that a reader never sees half a file.
fn write_model(path: &Path, m: &LearnedModel) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, m.to_json_pretty() + "\n").with_context(|| format!("cannot write --model {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to --model {}", tmp.display(), path.display()))?;
    eprintln!("floodgate: wrote model {} ({} targets)", path.display(), m.targets.len());
    Ok(())
}

fn cmd_replay(args: ReplayArgs) -> Result<()> {
    let cfg = load_config(args.config.as_deref())?;
    let source = cfg.output.source.clone();
    let mut engine = Engine::new(&*cfg)?.with_estimates(args.estimates);
    let start = read_model(args.model.as_deref())?;
    if let (Some(m), Some(p)) = (&start, &args.model) {
        engine.load_model(m).with_context(|| format!("--model {}", p.display()))?;
    }
    let input: Box<dyn io::Read + Send> = if args.path.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        let f = File::open(&args.path)
            .with_context(|| format!("cannot open {} (give a path to an NDJSON event log, or `-` for stdin)", args.path.display()))?;
        Box::new(f)
    };
    let threads = match args.threads {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut line = String::with_capacity(512);
    let mut shown_errors = 0u64;
    let table = args.format == Format::Table;
    if table {
        writeln!(out, "{:<24} {:<16} {:<22} details", "time", "signal", "subject")?;
    }
    let max_errors = args.max_errors;
    let path_name = args.path.display().to_string();
    let report = replay_threads(
        input,
        &mut engine,
        threads,
        |s: &Signal| {
            if table {
                let kind = s.kind().trim_start_matches("floodgate.");
                writeln!(out, "{:<24} {:<16} {:<22} {}", floodgate::time::rfc3339(s.time_ms()), kind, s.subject(), s.summary())
            } else {
                line.clear();
                s.write_cloudevent(&source, &mut line);
                line.push('\n');
                out.write_all(line.as_bytes())
            }
        },
        |e| {
            shown_errors += 1;
            if shown_errors <= max_errors {
                eprintln!("floodgate: {path_name}: {e}");
            }
        },
    )
    .with_context(|| format!("reading {}", args.path.display()))?;
    out.flush()?;
    eprintln!(
        "floodgate: {} lines: {} accepted, {} rejected, {} duplicates, {} late; {} campaigns; {} signals ({} viral onsets, {} scale-ahead)",
        report.lines,
        report.accepted,
        report.rejected,
        report.duplicates,
        report.late,
        report.campaigns,
        report.signals,
        report.engine.signals.viral_onset,
        report.engine.signals.scale_ahead,
    );
    if shown_errors > max_errors {
        eprintln!("floodgate: {} more rejected lines not shown (--max-errors)", shown_errors - max_errors);
    }
    if let Some(p) = args.stats {
        let f = File::create(&p).with_context(|| format!("cannot write --stats file {}", p.display()))?;
        serde_json::to_writer_pretty(f, &report).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.model {
        write_model(p, &engine.learned_model())?;
    }
    Ok(())
}

/// A delay for people: seconds, minutes or hours, one decimal.
fn delay(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

fn cmd_model_show(args: ModelShowArgs) -> Result<()> {
    let cfg = load_config(args.config.as_deref())?;
    let text = std::fs::read_to_string(&args.model).with_context(|| format!("cannot read --model {}", args.model.display()))?;
    let m = LearnedModel::from_json(&text).with_context(|| format!("--model {}", args.model.display()))?;
    let mut engine = Engine::new(&*cfg)?;
    engine.load_model(&m).with_context(|| format!("--model {}", args.model.display()))?;
    let views = engine.learned_views();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        serde_json::to_writer_pretty(&mut out, &views)?;
        writeln!(out)?;
    } else {
        writeln!(out, "model {} (format {} version {}, bin {} ms)", args.model.display(), m.format, m.version, m.bin_ms)?;
        writeln!(
            out,
            "{:<20} {:<20} {:>11} {:>11} {:>13} {:>13} {:>9} {:>10}",
            "target", "audience", "median", "p90", "click-through", "weight", "campaigns", "delays"
        )?;
        let row = |out: &mut BufWriter<_>, target: &str, audience: &str, w: &floodgate::engine::DirectWaveView| {
            writeln!(
                out,
                "{:<20} {:<20} {:>11} {:>11} {:>12.3}% {:>13.0} {:>9} {:>10.0}",
                target,
                audience,
                delay(w.response_median_s),
                delay(w.response_p90_s),
                100.0 * w.click_through,
                w.click_through_weight,
                w.campaigns,
                w.delays
            )
        };
        for t in &views {
            row(&mut out, &t.target, "(all)", &t.direct_wave)?;
            for a in &t.audiences {
                row(&mut out, &t.target, &a.audience, &a.direct_wave)?;
            }
        }
        writeln!(out)?;
        writeln!(out, "{:<20} {:>11} {:>11} {:>10} {:>12} {:>12}", "target", "GI median", "GI p90", "delays", "prior R", "exposure")?;
        for t in &views {
            let (median, p90, delays) =
                t.generation_interval.as_ref().map_or(("-".into(), "-".into(), 0.0), |g| (delay(g.median_s), delay(g.p90_s), g.delays));
            let (prior, exposure) = t.r_prior.map_or(("-".to_string(), 0.0), |p| (format!("{:.3}", p.mean), p.exposure));
            writeln!(out, "{:<20} {:>11} {:>11} {:>10.0} {:>12} {:>12.0}", t.target, median, p90, delays, prior, exposure)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn cmd_simulate(args: SimulateArgs) -> Result<()> {
    let Some(start) = floodgate::time::parse_rfc3339_ms(&args.start) else {
        bail!("--start {:?} is not an RFC 3339 time (e.g. 2026-03-02T08:00:00Z)", args.start);
    };
    if !(0.0..=1.0).contains(&args.duplicates) {
        bail!("--duplicates {} must be a probability between 0 and 1", args.duplicates);
    }
    let mut spec: SimSpec = match &args.spec {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read --spec {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not a valid simulation spec", p.display()))?
        }
        None => match args.scenario {
            Scenario::Demo => demo_scenario(args.seed, start),
            Scenario::Standard => standard_scenarios(args.seed, start),
            Scenario::HeavyTailed => floodgate::simulate::heavy_tailed_scenarios(args.seed, start),
        },
    };
    spec.duplicate_rate = args.duplicates;
    let events = simulate(&spec);
    let sink: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?),
        None => Box::new(io::stdout().lock()),
    };
    let mut w = BufWriter::new(sink);
    for e in &events {
        w.write_all(e.line.as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    if let Some(p) = &args.truth {
        let f = File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
        serde_json::to_writer_pretty(f, &spec)?;
    }
    eprintln!("floodgate: simulated {} events for {} campaigns (seed {})", events.len(), spec.campaigns.len(), args.seed);
    Ok(())
}

fn cmd_config(args: ConfigArgs) -> Result<()> {
    let cfg = load_config(args.config.as_deref())?;
    // Also check what only the engine checks (e.g. the generation interval).
    Engine::new(&*cfg)?;
    let text = toml::to_string_pretty(&*cfg).context("rendering the configuration as TOML")?;
    print!("{text}");
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

fn cmd_run(args: RunArgs) -> Result<()> {
    let cfg = load_config(args.config.as_deref())?;
    floodgate::telemetry::init(&cfg.log);
    let rt = runtime()?;
    let result = rt.block_on(async {
        let (tx, rx) = tokio::sync::broadcast::channel(1);
        tokio::spawn(floodgate::service::shutdown_on_signal(tx));
        floodgate::service::run(cfg, floodgate::shutdown::Shutdown::new(rx)).await
    });
    // Kafka clients are closed by the service; do not wait for anything else.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result.context("floodgate run")
}

fn cmd_produce(args: ProduceArgs) -> Result<()> {
    let cfg = load_config(args.config.as_deref())?;
    let mut kafka = cfg.kafka.clone();
    if let Some(b) = args.brokers {
        kafka.brokers = b;
    }
    let input: Box<dyn io::BufRead + Send> = if args.path.as_os_str() == "-" {
        Box::new(BufReader::with_capacity(1 << 16, io::stdin()))
    } else {
        let f = File::open(&args.path).with_context(|| format!("cannot open {}", args.path.display()))?;
        Box::new(BufReader::with_capacity(1 << 16, f))
    };
    let rt = runtime()?;
    let report = rt.block_on(async {
        if let Some(n) = args.partitions {
            floodgate::source::kafka::ensure_topic(&kafka, &args.topic, n)
                .await
                .with_context(|| format!("creating topic {}", args.topic))?;
        }
        floodgate::source::kafka::produce_ndjson(&kafka, &args.topic, input)
            .await
            .with_context(|| format!("publishing to {} at {}", args.topic, kafka.brokers))
    })?;
    eprintln!("floodgate: published {} records to {} ({} without a campaign key)", report.published, args.topic, report.unkeyed);
    Ok(())
}

/// An NDJSON event log, whole: the file at `path`, or stdin for `-`.
fn read_log(path: &std::path::Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut log = Vec::new();
        io::Read::read_to_end(&mut io::stdin().lock(), &mut log).context("reading stdin")?;
        return Ok(log);
    }
    std::fs::read(path).with_context(|| format!("cannot open {} (give a path to an NDJSON event log, or `-` for stdin)", path.display()))
}

/// Writes a report's `--html` page and `--json` document, where asked for
/// (JSON indented if `pretty`), and says where.
fn write_reports(
    html: Option<&std::path::Path>,
    page: impl FnOnce() -> String,
    json: Option<&std::path::Path>,
    value: &impl serde::Serialize,
    pretty: bool,
) -> Result<()> {
    if let Some(p) = html {
        std::fs::write(p, page()).with_context(|| format!("cannot write --html {}", p.display()))?;
        eprintln!("floodgate: wrote {}", p.display());
    }
    if let Some(p) = json {
        let f = File::create(p).with_context(|| format!("cannot write --json {}", p.display()))?;
        let mut w = BufWriter::new(f);
        if pretty { serde_json::to_writer_pretty(&mut w, value) } else { serde_json::to_writer(&mut w, value) }
            .with_context(|| format!("writing {}", p.display()))?;
        w.flush()?;
        eprintln!("floodgate: wrote {}", p.display());
    }
    Ok(())
}

fn cmd_backtest(args: BacktestArgs) -> Result<()> {
    use floodgate::backtest::{backtest_from, report, text_table, Model};
    let cfg = load_config(args.config.as_deref())?;
    let log = read_log(&args.path)?;
    let model = Model {
        startup_ms: args.startup,
        metrics_delay_ms: args.metrics_delay,
        stabilisation_ms: args.stabilisation,
        sync_ms: args.sync,
        trend_window_ms: args.trend_window,
        target_utilisation: args.target_utilisation,
        day: args.day,
    };
    let start = read_model(args.model.as_deref())?;
    let (mut b, learned) = backtest_from(&log, cfg.clone(), &model, start.as_ref())
        .with_context(|| format!("backtesting {}{}", args.path.display(), model_context(args.model.as_deref())))?;
    print!("{}", text_table(&b));
    if args.sweep {
        let s = floodgate::backtest::sweep::sweep_from(&log, cfg, &model, start.as_ref())
            .with_context(|| format!("sweeping {}", args.path.display()))?;
        print!("{}", floodgate::backtest::sweep::text_table(&s));
        b.sweep = Some(s);
    }
    write_reports(args.html.as_deref(), || report::html(&b), args.json.as_deref(), &b, true)?;
    if let Some(p) = &args.model {
        write_model(p, &learned)?;
    }
    Ok(())
}

fn cmd_evaluate(args: EvaluateArgs) -> Result<()> {
    use floodgate::evaluate::{evaluate_from, parse_horizons, report, text_table};
    let cfg = load_config(args.config.as_deref())?;
    let horizons = parse_horizons(&args.horizons)?;
    let log = read_log(&args.path)?;
    let start = read_model(args.model.as_deref())?;
    let (ev, learned) = evaluate_from(&log, cfg, &horizons, start.as_ref())
        .with_context(|| format!("evaluating {}{}", args.path.display(), model_context(args.model.as_deref())))?;
    print!("{}", text_table(&ev));
    for e in &ev.bad_input.examples {
        eprintln!("floodgate: {}: {e}", args.path.display());
    }
    write_reports(args.html.as_deref(), || report::html(&ev), args.json.as_deref(), &ev, false)?;
    if let Some(p) = &args.model {
        write_model(p, &learned)?;
    }
    Ok(())
}

/// The `--model` file a backtest or evaluation started from, for its error
/// message (loading it may be what failed); empty without one.
fn model_context(model: Option<&Path>) -> String {
    model.map_or_else(String::new, |p| format!(" with --model {}", p.display()))
}

fn cmd_convert_cascades(args: ConvertCascadesArgs) -> Result<()> {
    use floodgate::evaluate::cascades::{convert, CascadeRules};
    let Some(day_start_ms) = floodgate::time::parse_rfc3339_ms(&args.day) else {
        bail!("--day {:?} is not an RFC 3339 time (e.g. 2026-03-02T00:00:00Z)", args.day);
    };
    let input: Box<dyn io::BufRead> = if args.path.as_os_str() == "-" {
        Box::new(BufReader::with_capacity(1 << 16, io::stdin().lock()))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, File::open(&args.path).with_context(|| format!("cannot open {}", args.path.display()))?))
    };
    let sink: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?),
        None => Box::new(io::stdout().lock()),
    };
    let rules = CascadeRules { day_start_ms, max_age_ms: args.max_age, recipients: args.recipients, target: args.target };
    let r = convert(input, BufWriter::new(sink), &rules).with_context(|| format!("converting {}", args.path.display()))?;
    eprintln!(
        "floodgate: {} cascades ({} without a root): {} sends, {} clicks written; dropped {} forwards (no addressee count), {} clicks over --max-age, {} before their root, {} malformed lines",
        r.cascades, r.without_root, r.sends, r.clicks, r.forwards_dropped, r.too_late, r.before_root, r.malformed
    );
    Ok(())
}
