//! The `guestkit-worker` command.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use guestkit_host_api::LogLevel;
use guestkit_worker::client::{self, Client, OutputFormat};
use guestkit_worker::daemon::{self, DaemonConfig};
use guestkit_worker::executor::ExecutorConfig;
use guestkit_worker::local::{self, LocalJob};
use guestkit_worker::service::ServiceConfig;
use guestkit_worker::{EngineConfig, JobLimits, Sandbox};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

// glibc's allocator spends a fifth of a busy worker's CPU in malloc/free across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs untrusted WASM handler components against VM disk images.
#[derive(Debug, Parser)]
#[command(name = "guestkit-worker", version, about)]
struct Cli {
    /// Compile cache directory (default: $XDG_CACHE_HOME/guestkit-worker or ~/.cache/guestkit-worker).
    #[arg(long, global = true, env = "GUESTKIT_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Disable the on-disk compile cache.
    #[arg(long, global = true)]
    no_cache: bool,
    /// Log format on stderr (level set with RUST_LOG; default info for the daemon).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the worker: HTTP API, executor and metrics, until SIGTERM/SIGINT.
    Daemon(Box<DaemonArgs>),
    /// Run one job in-process, in the same sandbox the daemon uses, and print the result.
    Run(RunArgs),
    /// Submit a job (a JSON or YAML document, or flags) to a running worker.
    Submit(SubmitArgs),
    /// Show a job.
    Status(StatusArgs),
    /// Show a job's result.
    Result(ResultArgs),
    /// List jobs, newest first.
    List(ListArgs),
    /// Cancel a job.
    Cancel(IdArgs),
    /// List the handlers a worker serves and the files it failed to load.
    Handlers(ClientArgs),
    /// Show what a worker can do.
    Capabilities(ClientArgs),
    /// Check a worker's health.
    Health(ClientArgs),
    /// Tenant administration.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Tools for handler authors: scaffold a handler crate, check a component.
    Handler(guestkit_worker::authoring::HandlerCommand),
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Print the `sha256:HEX` line for a tenants file's `token_hashes`; reads the token
    /// from stdin (so it stays out of the shell history).
    HashToken,
}

#[derive(Debug, Args)]
struct DaemonArgs {
    /// Address of the HTTP API.
    #[arg(long, env = "GUESTKIT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Address of the Prometheus /metrics endpoint.
    #[arg(
        long,
        env = "GUESTKIT_METRICS_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    metrics_listen: std::net::SocketAddr,
    /// Serve no metrics endpoint.
    #[arg(long)]
    no_metrics: bool,
    /// Data directory: SQLite database, default handlers and images directories.
    #[arg(long, env = "GUESTKIT_DATA_DIR", default_value = "guestkit-data")]
    data_dir: PathBuf,
    /// postgres://... to share one queue between workers (default: SQLite in the data dir).
    #[arg(long, env = "GUESTKIT_DATABASE_URL")]
    database_url: Option<String>,
    /// Handlers directory, watched for .wasm files (default: DATA_DIR/handlers).
    #[arg(long, env = "GUESTKIT_HANDLERS_DIR")]
    handlers_dir: Option<PathBuf>,
    /// Directory jobs may be granted images from (repeatable; default: DATA_DIR/images).
    #[arg(long = "image-root")]
    image_roots: Vec<PathBuf>,
    /// NBD server jobs may name as an image: HOST:PORT, or a directory of unix sockets
    /// (repeatable; none by default).
    #[arg(long = "nbd-allow")]
    nbd_allow: Vec<String>,
    /// Tenants file (TOML): tenants, hashed API tokens, handlers, image roots, quotas.
    /// Without it the worker is single-tenant and asks for no token.
    #[arg(long = "tenants", env = "GUESTKIT_TENANTS_FILE")]
    tenants: Option<PathBuf>,
    /// Jobs run at once.
    #[arg(long, env = "GUESTKIT_MAX_CONCURRENT", default_value_t = 4)]
    max_concurrent: usize,
    /// Least severe handler log line kept in a job's events; lower ones go to this
    /// process's log (target `handler`, at debug) only.
    #[arg(long, env = "GUESTKIT_JOB_LOG_LEVEL", default_value = "info",
          value_parser = ["trace", "debug", "info", "warn", "error"])]
    job_log_level: String,
    /// Queued jobs above which submissions are answered 429.
    #[arg(long, default_value_t = 100_000)]
    max_queued: u64,
    /// Lease length in seconds (a crashed worker's jobs run again after this).
    #[arg(long, default_value_t = 30.0)]
    lease_seconds: f64,
    /// Seconds running jobs get to finish on SIGTERM before they are released.
    #[arg(long, default_value_t = 30.0)]
    shutdown_grace: f64,
    /// Worker pool name jobs may route to.
    #[arg(long, default_value = "default")]
    pool: String,
    /// Worker id written into leases (default: host-pid-random).
    #[arg(long)]
    worker_id: Option<String>,
    /// Fuel quota (CPU) of each job.
    #[arg(long)]
    fuel: Option<u64>,
    /// Memory limit of each job, in MiB.
    #[arg(long)]
    memory_mib: Option<usize>,
    /// Timeout of jobs that give none, in seconds.
    #[arg(long, default_value_t = 300)]
    default_timeout: u64,
    /// Longest timeout a job may ask for, in seconds.
    #[arg(long, default_value_t = 86_400)]
    max_timeout: u64,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// The worker's API.
    #[arg(
        long,
        env = "GUESTKIT_WORKER_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    api_url: String,
    /// Output format.
    #[arg(long, short = 'O', value_enum, default_value = "table")]
    output: OutputFormat,
    /// API token of your tenant (workers started with --tenants).
    #[arg(long, env = "GUESTKIT_WORKER_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// A client for the worker named by the common client flags.
fn connect(args: &ClientArgs) -> Result<Client> {
    Ok(Client::new(&args.api_url)?.with_token(args.token.as_deref()))
}

#[derive(Debug, Args)]
struct SubmitArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// A job document (JSON or YAML; `-` for stdin). Without it, the job is built from flags.
    file: Option<String>,
    /// Operation (short form).
    #[arg(long, short = 'o', conflicts_with = "file")]
    operation: Option<String>,
    /// Payload: inline JSON or @FILE (short form).
    #[arg(long, short = 'p', conflicts_with = "file")]
    payload: Option<String>,
    /// Image to grant (repeatable; short form).
    #[arg(long = "image", short = 'i', conflicts_with = "file")]
    images: Vec<String>,
    /// Priority 1-10 (short form).
    #[arg(long, conflicts_with = "file")]
    priority: Option<u8>,
    /// Timeout in seconds (short form).
    #[arg(long, conflicts_with = "file")]
    timeout: Option<u64>,
    /// Attempts (short form).
    #[arg(long, conflicts_with = "file")]
    max_attempts: Option<u32>,
    /// Idempotency key (short form).
    #[arg(long, conflicts_with = "file")]
    idempotency_key: Option<String>,
    /// Job id (short form; default: generated by the worker).
    #[arg(long, conflicts_with = "file")]
    job_id: Option<String>,
    /// Wait for the job to finish and print its result.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, requires = "wait")]
    wait_timeout: Option<f64>,
}

#[derive(Debug, Args)]
struct IdArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Job id.
    id: String,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Job id.
    id: String,
    /// Follow the job's events (state, progress, logs) until it finishes.
    #[arg(long, short = 'w')]
    watch: bool,
}

#[derive(Debug, Args)]
struct ResultArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Job id.
    id: String,
    /// Wait up to this many seconds for the job to finish.
    #[arg(long)]
    wait: Option<f64>,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only jobs in this status.
    #[arg(long)]
    status: Option<String>,
    /// Only jobs of this operation.
    #[arg(long)]
    operation: Option<String>,
    /// Page size.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Cursor from the previous page.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The operation to run (optional with --handler when it serves one operation).
    #[arg(long, short = 'o')]
    operation: Option<String>,
    /// The payload: inline JSON, or @FILE to read it from a file.
    #[arg(long, short = 'p', default_value = "null")]
    payload: String,
    /// An image file to grant to the job (repeatable).
    #[arg(long = "image", short = 'i')]
    images: Vec<PathBuf>,
    /// Run this component file instead of an installed handler.
    #[arg(long)]
    handler: Option<PathBuf>,
    /// Handlers directory to pick the handler from (the built-ins are always there).
    #[arg(long, env = "GUESTKIT_HANDLERS_DIR")]
    handlers_dir: Option<PathBuf>,
    /// Fuel quota (CPU) for the job.
    #[arg(long)]
    fuel: Option<u64>,
    /// Memory limit for the job, in MiB.
    #[arg(long)]
    memory_mib: Option<usize>,
    /// Wall-clock limit for the job, in seconds.
    #[arg(long)]
    timeout: Option<f64>,
}

fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("guestkit-worker"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Daemon(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    match real_main(cli).await {
        Ok(code) => code,
        Err(e) => {
            if let Some(failure) = e.downcast_ref::<client::ApiFailure>() {
                eprintln!("error: {failure}");
                // Refused requests are the caller's to fix (2); an unreachable or failing
                // server is not (3).
                return match failure.status {
                    Some(s) if (400..500).contains(&s) => ExitCode::from(2),
                    _ => ExitCode::from(3),
                };
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn cache_dir(cli: &Cli) -> Option<PathBuf> {
    if cli.no_cache {
        None
    } else {
        cli.cache_dir.clone().or_else(default_cache_dir)
    }
}

async fn real_main(cli: Cli) -> Result<ExitCode> {
    let cache_dir = cache_dir(&cli);
    match cli.command {
        Command::Daemon(args) => run_daemon(*args, cache_dir).await,
        Command::Run(args) => {
            let sandbox = Sandbox::new(EngineConfig {
                cache_dir,
                pool_slots: 16,
                ..EngineConfig::default()
            })?;
            run(&sandbox, args).await
        }
        Command::Submit(args) => submit(args).await,
        Command::Status(args) => status(args).await,
        Command::Result(args) => result(args).await,
        Command::List(args) => list(args).await,
        Command::Cancel(args) => cancel(args).await,
        Command::Handlers(args) => simple(args, "/handlers", client::handlers_table).await,
        Command::Capabilities(args) => {
            simple(args, "/capabilities", |v| {
                client::fields(
                    v,
                    &[
                        "worker_id",
                        "version",
                        "protocol_versions",
                        "operations",
                        "features",
                        "disk_formats",
                        "checksum_algorithms",
                    ],
                )
            })
            .await
        }
        Command::Health(args) => health(args).await,
        Command::Tenant(TenantCommand::HashToken) => {
            let mut token = String::new();
            std::io::stdin()
                .read_line(&mut token)
                .context("reading the token from stdin")?;
            let token = token.trim_end_matches(['\r', '\n']);
            if token.is_empty() {
                anyhow::bail!("no token on stdin");
            }
            say(&guestkit_worker::tenants::hash_token(token));
            Ok(ExitCode::SUCCESS)
        }
        Command::Handler(cmd) => guestkit_worker::authoring::main(cmd, cache_dir).await,
    }
}

fn seconds(flag: &str, secs: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag}: must be a positive number of seconds"))
}

/// Job limits with the `--fuel` and `--memory-mib` overrides applied.
fn job_limits(fuel: Option<u64>, memory_mib: Option<usize>) -> Result<JobLimits> {
    let mut limits = JobLimits::default();
    if let Some(fuel) = fuel {
        limits.fuel = fuel;
    }
    if let Some(mib) = memory_mib {
        limits.memory_bytes = mib
            .checked_mul(1 << 20)
            .context("--memory-mib: too large")?;
    }
    Ok(limits)
}

async fn run_daemon(args: DaemonArgs, cache_dir: Option<PathBuf>) -> Result<ExitCode> {
    if args.max_concurrent == 0 {
        anyhow::bail!("--max-concurrent: must be at least 1");
    }
    let limits = job_limits(args.fuel, args.memory_mib)?;
    let mut config = DaemonConfig::new(args.data_dir);
    config.listen = args.listen;
    config.metrics_listen = (!args.no_metrics).then_some(args.metrics_listen);
    config.database_url = args.database_url;
    config.handlers_dir = args.handlers_dir;
    config.image_roots = args.image_roots;
    config.nbd_allow = args.nbd_allow;
    let multi_tenant = args.tenants.is_some();
    config.tenants_file = args.tenants;
    config.cache_dir = cache_dir;
    config.shutdown_grace = Duration::try_from_secs_f64(args.shutdown_grace)
        .context("--shutdown-grace: must be a number of seconds >= 0")?;
    config.executor = ExecutorConfig {
        worker_id: args
            .worker_id
            .unwrap_or_else(guestkit_worker::executor::default_worker_id),
        max_concurrent: args.max_concurrent,
        lease: seconds("--lease-seconds", args.lease_seconds)?,
        limits,
        // clap has already checked the name against the list above.
        job_log_level: LogLevel::from_name(&args.job_log_level).unwrap_or(LogLevel::Info),
        ..ExecutorConfig::default()
    };
    config.service = ServiceConfig {
        max_queued: args.max_queued,
        worker_pool: args.pool,
        default_timeout: Duration::from_secs(args.default_timeout.max(1)),
        max_timeout: Duration::from_secs(args.max_timeout.max(1)),
        ..ServiceConfig::default()
    };
    daemon::run(config, daemon::termination_signal(), |api, metrics| {
        // One line on stdout for scripts and tests: where the worker listens.
        let line = json!({
            "event": "ready",
            "api_url": format!("http://{api}"),
            "metrics_url": metrics.map(|m| format!("http://{m}/metrics")),
            "tenancy": if multi_tenant { "multi" } else { "single" },
        });
        // Nobody may be reading (stdout closed): the daemon runs on regardless.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

fn print(format: OutputFormat, value: &Value, table: impl FnOnce(&Value) -> String) {
    say(&client::render(format, value, table));
}

/// Prints a line to stdout; a reader that went away (`| head`) ends the command quietly.
fn say(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(3);
    }
}

fn read_payload(arg: &str) -> Result<Value> {
    let text = match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("--payload: reading {path}"))?
        }
        None => arg.to_string(),
    };
    serde_json::from_str(&text).context("--payload: not valid JSON")
}

/// Exit code for a finished job: 0 when it succeeded.
fn job_exit(status: &Value) -> ExitCode {
    if status.as_str() == Some("succeeded") {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn submit(args: SubmitArgs) -> Result<ExitCode> {
    let client = connect(&args.client)?;
    let doc = match &args.file {
        Some(file) => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the job from stdin")?
            } else {
                std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
            };
            client::parse_document(&text, file)?
        }
        None => {
            let operation = args
                .operation
                .as_deref()
                .context("give a job file, or --operation (with --payload, --image)")?;
            let payload = match &args.payload {
                Some(p) => read_payload(p)?,
                None => Value::Null,
            };
            let mut execution = serde_json::Map::new();
            if let Some(p) = args.priority {
                execution.insert("priority".into(), json!(p));
            }
            if let Some(t) = args.timeout {
                execution.insert("timeout_seconds".into(), json!(t));
            }
            if let Some(m) = args.max_attempts {
                execution.insert("max_attempts".into(), json!(m));
            }
            if let Some(k) = &args.idempotency_key {
                execution.insert("idempotency_key".into(), json!(k));
            }
            client::short_form(
                operation,
                payload,
                &args.images,
                Value::Object(execution),
                args.job_id.as_deref(),
            )
        }
    };
    if !args.wait {
        let (_, job) = client.post("/jobs", &doc).await?;
        print(args.client.output, &job, client::job_table);
        return Ok(ExitCode::SUCCESS);
    }
    let timeout = args
        .wait_timeout
        .map(|t| seconds("--wait-timeout", t))
        .transpose()?;
    let started = std::time::Instant::now();
    // The submission itself waits (up to 30 s, or the timeout); a longer job is then
    // followed through the result endpoint.
    let first = timeout
        .unwrap_or(Duration::from_secs(30))
        .min(Duration::from_secs(30));
    let path = format!("/jobs?wait={}", first.as_secs_f64());
    let (_, mut job) = client.post(&path, &doc).await?;
    let result = match job.get_mut("result").map(serde_json::Value::take) {
        Some(result) => result,
        None => {
            let id = job["id"].as_str().unwrap_or_default().to_string();
            let left = timeout.map(|t| t.saturating_sub(started.elapsed()));
            client.wait_result(&id, left).await?
        }
    };
    print(args.client.output, &result, client::result_table);
    Ok(job_exit(&result["status"]))
}

async fn status(args: StatusArgs) -> Result<ExitCode> {
    let client = connect(&args.client)?;
    let path = format!("/jobs/{}", args.id);
    let job = client.get(&path).await?;
    if !args.watch {
        print(args.client.output, &job, client::job_table);
        return Ok(ExitCode::SUCCESS);
    }
    let format = args.client.output;
    client
        .watch(&args.id, |kind, data| {
            let event = json!({"event": kind, "data": data});
            match format {
                OutputFormat::Table => say(&watch_line(kind, data)),
                OutputFormat::Json => say(&event.to_string()),
                OutputFormat::Yaml => say(&format!(
                    "---\n{}",
                    client::render(format, &event, |_| String::new())
                )),
            }
        })
        .await?;
    let job = client.get(&path).await?;
    if format == OutputFormat::Table {
        say(&client::render(format, &job, client::job_table));
    }
    Ok(job_exit(&job["status"]))
}

fn watch_line(kind: &str, data: &Value) -> String {
    let at = data["at"].as_str().unwrap_or("");
    match kind {
        "state" => format!("{at} state    {}", data["state"].as_str().unwrap_or("?")),
        "progress" => format!(
            "{at} progress {}/{} {}",
            data["done"],
            data["total"],
            data["message"].as_str().unwrap_or("")
        ),
        "log" => format!(
            "{at} log      [{}] {}",
            data["level"].as_str().unwrap_or("?"),
            data["message"].as_str().unwrap_or("")
        ),
        "end" => format!("{at} end      {}", data["status"].as_str().unwrap_or("?")),
        other => format!("{at} {other} {data}"),
    }
}

async fn result(args: ResultArgs) -> Result<ExitCode> {
    let client = connect(&args.client)?;
    let result = match args.wait {
        Some(w) => {
            client
                .wait_result(&args.id, Some(seconds("--wait", w)?))
                .await?
        }
        None => client.get(&format!("/jobs/{}/result", args.id)).await?,
    };
    print(args.client.output, &result, client::result_table);
    Ok(job_exit(&result["status"]))
}

async fn list(args: ListArgs) -> Result<ExitCode> {
    let client = connect(&args.client)?;
    let mut query = vec![format!("limit={}", args.limit)];
    for (key, value) in [
        ("status", &args.status),
        ("operation", &args.operation),
        ("cursor", &args.cursor),
    ] {
        if let Some(v) = value {
            query.push(format!("{key}={}", urlencode(v)));
        }
    }
    let page = client.get(&format!("/jobs?{}", query.join("&"))).await?;
    print(args.client.output, &page, client::list_table);
    Ok(ExitCode::SUCCESS)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn cancel(args: IdArgs) -> Result<ExitCode> {
    let client = connect(&args.client)?;
    let (_, answer) = client
        .post(&format!("/jobs/{}/cancel", args.id), &json!({}))
        .await?;
    print(args.client.output, &answer, |v| {
        client::fields(v, &["id", "status"])
    });
    Ok(ExitCode::SUCCESS)
}

async fn simple(
    args: ClientArgs,
    path: &str,
    table: impl FnOnce(&Value) -> String,
) -> Result<ExitCode> {
    let client = connect(&args)?;
    let doc = client.get(path).await?;
    print(args.output, &doc, table);
    Ok(ExitCode::SUCCESS)
}

async fn health(args: ClientArgs) -> Result<ExitCode> {
    let client = connect(&args)?;
    let table = |v: &Value| {
        client::fields(
            v,
            &[
                "status",
                "version",
                "worker_id",
                "uptime_seconds",
                "store",
                "handlers",
                "running_jobs",
            ],
        )
    };
    match client.get("/health").await {
        Ok(doc) => {
            print(args.output, &doc, table);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.status == Some(503) => {
            eprintln!("worker unhealthy: {}", e.message);
            Ok(ExitCode::from(3))
        }
        Err(e) => Err(e.into()),
    }
}

async fn run(sandbox: &std::sync::Arc<Sandbox>, args: RunArgs) -> Result<ExitCode> {
    let payload = read_payload(&args.payload)?;
    let mut limits = job_limits(args.fuel, args.memory_mib)?;
    if let Some(secs) = args.timeout {
        limits.wall_clock = seconds("--timeout", secs)?;
    }
    let job = LocalJob {
        operation: args.operation,
        payload,
        images: args.images,
        handler_file: args.handler,
        handlers_dir: args.handlers_dir,
        limits,
    };
    let (handler, report) = local::run(sandbox, &job).await?;
    let doc = local::report_json(&handler, &report);
    say(&serde_json::to_string_pretty(&doc)?);
    Ok(if report.outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
