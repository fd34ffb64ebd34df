//! The documentation names everything a user can meet: every flag and environment variable in
//! the README's configuration table, every error code and close code in the README and in
//! PROTOCOL.md, every Socket.IO packet error code in PROTOCOL.md. A knob or code added without its documentation fails here.
#![allow(clippy::unwrap_used, missing_docs)]

use clap::CommandFactory;
use wsgate::config::Cli;
use wsgate_protocol::{CloseCode, ErrorCode};

fn read(path: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A table row whose first cell is `` `name` `` (or starts a list of names), in `doc`.
fn has_row(doc: &str, name: &str) -> bool {
    doc.lines().any(|line| {
        line.strip_prefix("| ")
            .and_then(|rest| rest.split(" |").next())
            .is_some_and(|cell| cell.contains(&format!("`{name}`")) || cell == name)
    })
}

#[test]
fn every_server_flag_and_variable_is_in_the_readme_configuration_table() {
    let readme = read("README.md");
    let cli = Cli::command();
    let mut checked = 0;
    for arg in cli.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if arg.is_hide_set() || long == "help" || long == "version" {
            continue;
        }
        let flag = format!("`--{long}`");
        let row = readme
            .lines()
            .find(|l| l.starts_with("| `") && l.contains(&flag))
            .unwrap_or_else(|| panic!("README has no configuration row for {flag}"));
        if let Some(env) = arg.get_env() {
            let env = env.to_str().unwrap();
            assert!(
                row.starts_with(&format!("| `{env}` |")),
                "README's row for {flag} names another variable than {env}: {row}"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 30,
        "only {checked} flags found: is the table read right?"
    );
}

#[test]
fn every_error_code_is_documented_in_the_readme_and_the_protocol() {
    let readme = read("README.md");
    let protocol = read("protocol/PROTOCOL.md");
    for code in ErrorCode::ALL {
        for (name, doc) in [("README.md", &readme), ("PROTOCOL.md", &protocol)] {
            assert!(
                has_row(doc, code.as_str()),
                "{name} has no table row for error code `{}`",
                code.as_str()
            );
        }
    }
}

#[test]
fn every_socketio_packet_error_code_is_documented_in_the_protocol() {
    let protocol = read("protocol/PROTOCOL.md");
    for code in wsgate_protocol::socketio::CODES {
        assert!(
            has_row(&protocol, code),
            "PROTOCOL.md has no table row for Socket.IO code `{code}`"
        );
    }
}

#[test]
fn every_close_code_is_documented_in_the_readme_and_the_protocol() {
    let readme = read("README.md");
    let protocol = read("protocol/PROTOCOL.md");
    for code in CloseCode::ALL {
        let n = code.as_u16().to_string();
        for (name, doc) in [("README.md", &readme), ("PROTOCOL.md", &protocol)] {
            assert!(
                has_row(doc, &n),
                "{name} has no table row for close code {n} ({})",
                code.reason()
            );
        }
    }
}
