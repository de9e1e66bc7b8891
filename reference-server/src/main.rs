//! `chorus-gateway`: the reference chat gateway as a standalone server.

use clap::Parser;

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
