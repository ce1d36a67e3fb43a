//! The `guestkit-worker` command.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use guestkit_worker::local::{self, LocalJob};
use guestkit_worker::{EngineConfig, JobLimits, Sandbox};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one job in-process, in the same sandbox the daemon uses, and print the result.
    Run(RunArgs),
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match real_main(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn real_main(cli: Cli) -> Result<ExitCode> {
    let cache_dir = if cli.no_cache {
        None
    } else {
        cli.cache_dir.or_else(default_cache_dir)
    };
    let sandbox = Sandbox::new(EngineConfig {
        cache_dir,
        pool_slots: 16,
        ..EngineConfig::default()
    })?;
    match cli.command {
        Command::Run(args) => run(&sandbox, args).await,
    }
}

async fn run(sandbox: &std::sync::Arc<Sandbox>, args: RunArgs) -> Result<ExitCode> {
    let payload_text = match args.payload.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("--payload: reading {path}"))?
        }
        None => args.payload.clone(),
    };
    let payload = serde_json::from_str(&payload_text).context("--payload: not valid JSON")?;
    let mut limits = JobLimits::default();
    if let Some(fuel) = args.fuel {
        limits.fuel = fuel;
    }
    if let Some(mib) = args.memory_mib {
        limits.memory_bytes = mib
            .checked_mul(1 << 20)
            .context("--memory-mib: too large")?;
    }
    if let Some(secs) = args.timeout {
        limits.wall_clock = Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--timeout: must be a positive number of seconds")?;
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
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(if report.outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
