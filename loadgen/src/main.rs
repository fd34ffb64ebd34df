//! The `wsgate-loadgen` binary: parses the command line, runs the scenario, prints the table
//! (and JSON, and the report), and exits non-zero past `--max-loss` (loss, failures, refusals,
//! offset gaps and duplicates).

use std::process::ExitCode;

use clap::Parser;
use wsgate_loadgen::cli::Cli;
use wsgate_loadgen::coordinator::{RunOptions, WORKER_ARG};
use wsgate_loadgen::worker;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(WORKER_ARG) {
        return match worker::worker_main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wsgate-loadgen worker: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wsgate-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let plan = cli.scenario.plan()?;
    let common = cli.scenario.common();
    let opts = RunOptions {
        progress: !common.quiet,
        server_pid: common.server_pid,
        worker_exe: None,
    };
    let summary = wsgate_loadgen::run(&plan, &opts)?;
    if common.json {
        eprint!("{}", summary.table());
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.table());
    }
    if let Some(path) = &common.report {
        let doc = match path.extension().and_then(|e| e.to_str()) {
            Some("html") | Some("htm") => summary.html(),
            _ => summary.svg(),
        };
        std::fs::write(path, doc)?;
        eprintln!("report written to {}", path.display());
    }
    let failed_ratio = summary.failed as f64 / summary.connections.max(1) as f64;
    let loss = summary.loss_ratio.unwrap_or(0.0);
    // Publishes answered with an error, and pushes the REST API did not answer with 200.
    let refused: u64 =
        summary.error_codes.values().sum::<u64>() + summary.push_errors.values().sum::<u64>();
    let refused_ratio = refused as f64 / summary.published.max(1) as f64;
    // Chat: offsets missing or repeated, per offset checked.
    let offset_ratio = summary.offsets.map_or(0.0, |o| {
        (o.gaps + o.duplicates) as f64 / o.checked.max(1) as f64
    });
    if loss > common.max_loss
        || failed_ratio > common.max_loss
        || refused_ratio > common.max_loss
        || offset_ratio > common.max_loss
        || summary.decode_mismatches > 0
    {
        let offsets = match summary.offsets {
            Some(_) => format!(", offset gaps and duplicates {:.4} %", offset_ratio * 100.0),
            None => String::new(),
        };
        eprintln!(
            "FAIL: loss {:.4} %, failures {:.4} %, refused {:.4} %{offsets} (threshold {:.4} %)",
            loss * 100.0,
            failed_ratio * 100.0,
            refused_ratio * 100.0,
            common.max_loss * 100.0
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
