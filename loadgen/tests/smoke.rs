//! The CI smoke run: the real `wsgate` binary on a free port, driven by a tiny `connect` and a
//! tiny `fanout` run through the loadgen's library API, with zero loss required.

use clap::Parser;
use wsgate_loadgen::cli::Cli;
use wsgate_loadgen::{run, RunOptions, Summary};

mod common;

use common::{start_server, SECRET};

fn run_cli(args: &[&str]) -> Summary {
    let cli = Cli::try_parse_from(args).expect("valid arguments");
    let plan = cli.scenario.plan().expect("a plan");
    let opts = RunOptions {
        server_pid: cli.scenario.common().server_pid,
        ..RunOptions::default()
    };
    run(&plan, &opts).expect("the run completes")
}

#[test]
fn connect_and_fanout_against_the_real_server() {
    let server = start_server(&["--rate-burst", "1000", "--shards", "2"]);
    let url = server.url();
    let pid = server.child.id().to_string();

    let s = run_cli(&[
        "wsgate-loadgen",
        "connect",
        "--url",
        &url,
        "--jwt-secret",
        SECRET,
        "-n",
        "50",
        "--connect-rate",
        "500",
        "--duration",
        "2s",
        "--workers",
        "1",
        "--server-pid",
        &pid,
    ]);
    eprint!("{}", s.table());
    assert_eq!(s.established, 50, "failures: {:?}", s.failures);
    assert_eq!(s.failed, 0);
    assert_eq!(s.handshake.count, 50);
    assert!(s.connect_rate > 0.0);
    assert!(s.server_bytes_per_connection.is_some());

    for format in ["json", "msgpack"] {
        let s = run_cli(&[
            "wsgate-loadgen",
            "fanout",
            "--url",
            &url,
            "--jwt-secret",
            SECRET,
            "--format",
            format,
            "-n",
            "21",
            "--publishers",
            "1",
            "--rooms",
            "1",
            "--mode",
            "burst",
            "--burst",
            "200",
            "--interval",
            "60s",
            "--duration",
            "1s",
            "--workers",
            "1",
        ]);
        eprint!("{}", s.table());
        assert_eq!(s.failed, 0, "failures: {:?}", s.failures);
        assert_eq!(s.acked, 200, "errors: {:?}", s.error_codes);
        assert_eq!(s.expected, Some(200 * 20));
        assert_eq!(s.received, 200 * 20);
        assert_eq!(s.lost, Some(0));
        assert_eq!(s.decode_mismatches, 0);
        assert!(s.latency.count > 0);
    }
}

#[test]
fn off_loopback_targets_are_refused() {
    let cli = Cli::try_parse_from([
        "wsgate-loadgen",
        "connect",
        "--url",
        "ws://192.0.2.1:3000/ws",
        "--jwt-secret",
        "x",
    ])
    .expect("parses");
    assert!(cli.scenario.plan().is_err());
}
