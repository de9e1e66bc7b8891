//! `chorus-gateway`: the reference chat gateway as a standalone server.

use clap::Parser;

/// mimalloc rather than glibc's malloc: with 7,000 idle joined sockets glibc
/// kept 2.3 KiB per socket of freed memory (presumably the `onlineUsers` snapshots built
/// at each join), which `malloc_trim` gave back; mimalloc does not keep it
/// (bench/RESULTS.md section 6).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The chorus reference Socket.IO chat gateway (namespace /chat).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: chorus_gateway::GatewayConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    chorus_gateway::init_logging(&cli.config.log_level);
    chorus_gateway::serve_until_signal(cli.config).await?;
    Ok(())
}
