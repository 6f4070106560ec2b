//! `letip`: serve (the default), migrate, seed, or recount the stats counters.

use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use letip_server::{Cli, Command, Config, SeedArgs};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system allocator: under load a cache hit's short-lived
/// buffers (the request, the Redis command and answer, the response) spent a sixth of the
/// server's time in glibc's malloc and free (`_int_malloc`, `malloc_consolidate`,
/// `unlink_chunk`), which keep shared arenas and coalesce on free; mimalloc's per-thread
/// free lists serve them without either.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The multi-threaded runtime: diesel's migration harness needs `block_in_place`, and
// actix-web's server runs on it unchanged.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            tracing::info!(config = %config.describe(), "starting");
            letip_server::start(&config)
                .await?
                .serve_until_signal()
                .await
        }
        Command::Migrate => {
            let applied = letip_server::migrate(&config).await?;
            tracing::info!(applied, "migrations are up to date");
            Ok(())
        }
        Command::Seed(args) => seed(&config, &args).await,
        Command::RecountStats => {
            let started = Instant::now();
            letip_server::recount_stats(&config).await?;
            tracing::info!(
                seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                "stats counters recounted"
            );
            Ok(())
        }
    }
}

async fn seed(config: &Config, args: &SeedArgs) -> anyhow::Result<()> {
    // Drawn only on a terminal: a piped or CI run gets the summary line alone.
    let bar = ProgressBar::new(args.businesses);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} businesses ({per_sec}, eta {eta})",
        )
        .context("progress bar template")?,
    );
    let started = Instant::now();
    let report = letip_server::seed(config, args, &|n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    match report {
        None => tracing::info!("the database already holds businesses; nothing seeded"),
        Some(r) => tracing::info!(
            businesses = r.businesses,
            contacts = r.contacts,
            logs = r.logs,
            messages = r.messages,
            seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
            "seeded"
        ),
    }
    Ok(())
}
