//! The `wsgate` binary: runs the server, or mints a development token.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use wsgate::config::{CliCommand, LogFormat};
use wsgate::MintOptions;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = wsgate::config::parse();
    if let Some(CliCommand::Token(args)) = cli.command {
        let Some(secret) = cli.config.jwt_secret.as_deref() else {
            eprintln!("wsgate token: set JWT_SECRET (or --jwt-secret) to the server's secret");
            return ExitCode::FAILURE;
        };
        let rooms: Option<Vec<&str>> = args.rooms.as_deref().map(|r| r.split(',').collect());
        let opts = MintOptions {
            sid: args.sid.as_deref(),
            aud: args.aud.as_deref(),
            iss: args.iss.as_deref(),
            rooms: rooms.as_deref(),
        };
        println!("{}", wsgate::mint(secret, &args.sub, args.exp, &opts));
        return ExitCode::SUCCESS;
    }
    init_logging(cli.config.log_format);
    let server = match wsgate::start(cli.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wsgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(secret) = server.dev_secret() {
        announce_dev_mode(secret, server.local_addr());
    }
    if let Some(key) = server.dev_api_key() {
        eprintln!(
            "!!! DEVELOPMENT MODE: no API_KEYS set; REST API key for this run:\n  {key}\n\
             Try: curl -H 'Authorization: Bearer {key}' http://127.0.0.1:{}/api/v1/stats\n",
            server.local_addr().port()
        );
    }
    wait_for_signal();
    tracing::info!("shutting down: closing connections with 1001");
    server.shutdown_blocking();
    tracing::info!("bye");
    ExitCode::SUCCESS
}

/// The log subscriber: `RUST_LOG`'s filter (default `info`) in the configured format, to
/// standard output; colours only on a terminal, so files and pipes get plain text.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Development mode: no key configured, so say so loudly and hand out a working token.
fn announce_dev_mode(secret: &str, addr: std::net::SocketAddr) {
    let token = wsgate::mint(
        secret,
        "dev-user",
        Duration::from_secs(24 * 3600),
        &MintOptions::default(),
    );
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    eprintln!(
        "\n!!! DEVELOPMENT MODE: no JWT_SECRET or JWT_PUBLIC_KEY_FILE set; using a random secret.\n\
         !!! Do not run this in production. Set JWT_SECRET to your backend's signing secret.\n\n\
         A token for user \"dev-user\" (valid 24 h):\n  {token}\n\n\
         Try it:\n  websocat 'ws://{host}:{port}/ws?token={token}'\n\
         then send: {{\"cmd\":\"join\",\"id\":1,\"room\":\"lobby\"}}\n\n\
         Mint more tokens with: JWT_SECRET={secret} wsgate token --sub alice --exp 1h\n",
        port = addr.port()
    );
}

fn wait_for_signal() {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the signal runtime; stopping");
            return;
        }
    };
    runtime.block_on(async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    });
}
