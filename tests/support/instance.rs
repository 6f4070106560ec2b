//! The server as a process of its own, for tests that pause an instance (SIGSTOP): its
//! configuration from the environment, as `letip serve` reads it. Prints `listening
//! <address>` once it accepts connections, and serves until SIGTERM or Ctrl-C.

// The line on stdout is how the test learns the address.
#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = letip_server::Config::from_env();
    let running = letip_server::start(&config).await?;
    println!("listening {}", running.addr);
    running.serve_until_signal().await
}
