//! The `ironpost` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ironpost::config::{Config, RuntimeKind};
use ironpost::directory;

/// The demo account created on first start with the embedded configuration.
const DEMO_USER: &str = "demo@example.test";
const DEMO_PASSWORD: &str = "demo-password";

#[derive(Parser)]
#[command(
    name = "ironpost",
    version,
    about = "A mail server: SMTP, IMAP and POP3 over Maildir in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (without --config: the embedded default on unprivileged loopback ports).
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The runtime, overriding the configuration's `runtime`: mio or smol.
        #[arg(long, value_name = "mio|smol")]
        runtime: Option<RuntimeKind>,
    },
    /// Manage accounts in postfix-accounts.cf.
    Email {
        #[command(subcommand)]
        action: EmailCmd,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Inspect and manage the outbound queue.
    Queue {
        #[command(subcommand)]
        action: QueueCmd,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Print the embedded default configuration, a starting point for your own.
    DefaultConfig,
}

#[derive(Subcommand)]
enum QueueCmd {
    /// List queued messages with each recipient's state.
    List,
    /// Try every queued message now (a running server picks this up within a second).
    Flush,
    /// Delete a queued message without delivering it or telling its sender.
    Delete { id: String },
}

#[derive(Subcommand)]
enum EmailCmd {
    /// Add an account, or set its password.
    Add { address: String, password: String },
    /// Delete an account.
    Del { address: String },
    /// List accounts.
    List,
}

fn load(config: Option<PathBuf>) -> Result<(Config, bool), String> {
    match config {
        Some(p) => Config::load(&p)
            .map(|c| (c, false))
            .map_err(|e| e.to_string()),
        None => {
            let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
            Ok((Config::embedded_default(&cwd), true))
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Cmd::Serve { config, runtime } => {
            let (mut config, embedded) = load(config)?;
            if let Some(runtime) = runtime {
                config.runtime = runtime;
            }
            if embedded && !config.accounts_file.exists() {
                std::fs::create_dir_all(&config.data_dir)
                    .map_err(|e| format!("{}: {e}", config.data_dir.display()))?;
                directory::add_account(&config.accounts_file, DEMO_USER, DEMO_PASSWORD)
                    .map_err(|e| e.to_string())?;
                tracing::info!(
                    account = DEMO_USER,
                    password = DEMO_PASSWORD,
                    "created the demo account"
                );
            }
            ironpost::serve::serve(config).map_err(|e| e.to_string())
        }
        Cmd::Email { action, config } => {
            let (config, _) = load(config)?;
            let file = &config.accounts_file;
            match action {
                EmailCmd::Add { address, password } => {
                    if let Some(dir) = file.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| format!("{}: {e}", dir.display()))?;
                    }
                    directory::add_account(file, &address, &password).map_err(|e| e.to_string())
                }
                EmailCmd::Del { address } => match directory::delete_account(file, &address) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(format!("no account {address} in {}", file.display())),
                    Err(e) => Err(e.to_string()),
                },
                EmailCmd::List => {
                    for a in directory::list_accounts(file).map_err(|e| e.to_string())? {
                        println!("{a}");
                    }
                    Ok(())
                }
            }
        }
        Cmd::Queue { action, config } => {
            let (config, _) = load(config)?;
            let dir = &config.data_dir;
            let out = match action {
                QueueCmd::List => ironpost::queue::cli::list(dir)?,
                QueueCmd::Flush => ironpost::queue::cli::flush(dir)?,
                QueueCmd::Delete { id } => ironpost::queue::cli::delete(dir, &id)?,
            };
            print!("{out}");
            Ok(())
        }
        Cmd::DefaultConfig => {
            print!("{}", ironpost::config::DEFAULT_CONFIG);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironpost: {e}");
            ExitCode::FAILURE
        }
    }
}
