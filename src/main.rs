//! The `tokentra-sync` binary: parses the command line, sets up logging, and
//! hands over to [`tokentra_sync::cli`].

use clap::Parser;
use tracing_subscriber::EnvFilter;

use tokentra_sync::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let code = actix_rt::System::new().block_on(async move {
        match cli::run(cli).await {
            Ok(code) => code,
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "command failed");
                eprintln!("error: {err:#}");
                1
            }
        }
    });
    std::process::exit(code);
}
