//! The configuration file (`--config wsgate.toml`, `CONFIG`): any knob by its flag's name, and
//! the `[socketio]` table (the event map). A knob set in the file is its default for this
//! run: a flag or an environment variable still overrides it, so every knob keeps its one
//! home in `config` and its one name.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};

use super::socketio::SocketIoFile;
use super::Cli;

/// Why the configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not TOML, or its `[socketio]` table is not as documented.
    #[error("config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
    /// A key that names no knob.
    #[error("config file {path}: `{key}` is not a setting (see `wsgate --help`)")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A value that is not a string, number, boolean or array of them.
    #[error("config file {path}: `{key}` must be a string, a number, a boolean or a list")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// The flags, the environment or the file's values do not parse.
    #[error("{0}")]
    Args(#[from] clap::Error),
}

/// The command line as `wsgate` reads it: flags, then the environment, then the file that
/// `--config` (or `CONFIG`) names, then the defaults. `--help` and `--version` exit here.
pub fn parse() -> Cli {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| match e {
        FileError::Args(e) => e.exit(),
        e => {
            eprintln!("wsgate: {e}");
            std::process::exit(2)
        }
    })
}

/// [`parse`] from `args` (the program name first).
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, FileError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = Cli::command();
    // A first pass finds the file; it ignores everything else (and never exits).
    let first = Cli::command()
        .ignore_errors(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .try_get_matches_from(&args)
        .ok();
    let path = first.and_then(|m| m.get_one::<PathBuf>("config").cloned());
    let mut socketio = SocketIoFile::default();
    if let Some(path) = &path {
        let (defaults, table) = read(path)?;
        for (id, value) in defaults {
            command = command.mut_arg(id, |arg| arg.default_value(value));
        }
        socketio = table;
    }
    let matches = command.try_get_matches_from(&args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    cli.config.socketio_file = socketio;
    Ok(cli)
}

/// The file's knobs (as clap argument ids with their values as text) and its `[socketio]`.
fn read(path: &Path) -> Result<(Vec<(String, String)>, SocketIoFile), FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |e: toml::de::Error| FileError::Invalid {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut table: toml::Table = toml::from_str(&text).map_err(invalid)?;
    let socketio = match table.remove("socketio") {
        Some(value) => value.try_into().map_err(invalid)?,
        None => SocketIoFile::default(),
    };
    let command = Cli::command();
    let mut knobs = Vec::new();
    for (key, value) in table {
        let id = key.replace('-', "_");
        let known = command
            .get_arguments()
            .any(|a| a.get_id() == id.as_str() && a.get_long().is_some());
        if !known || id == "config" {
            return Err(FileError::UnknownKey {
                path: path.to_owned(),
                key,
            });
        }
        let Some(text) = as_text(&value) else {
            return Err(FileError::BadValue {
                path: path.to_owned(),
                key,
            });
        };
        knobs.push((id, text));
    }
    Ok((knobs, socketio))
}

/// A value as a flag would spell it: lists comma-joined.
fn as_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => {
            let items: Option<Vec<String>> = items.iter().map(as_text).collect();
            Some(items?.join(","))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write;

    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn parse(args: &[&str]) -> Result<Cli, FileError> {
        try_parse_from(std::iter::once("wsgate").chain(args.iter().copied()))
    }

    #[test]
    fn the_file_sets_defaults_that_flags_override() {
        let f = file("port = 4000\nshards = 3\nsocketio-namespaces = [\"/\", \"/chat\"]\n");
        let path = f.path().to_str().unwrap();
        let cli = parse(&["--config", path]).unwrap();
        assert_eq!(
            (cli.config.port, cli.config.shards),
            (4000, 3),
            "from the file"
        );
        assert_eq!(cli.config.socketio_namespaces, "/,/chat", "a list, joined");
        let cli = parse(&["--config", path, "--port", "5000"]).unwrap();
        assert_eq!(cli.config.port, 5000, "the flag wins");
    }

    #[test]
    fn unknown_keys_bad_values_and_bad_tables_are_refused_with_the_key() {
        let f = file("prot = 1\n");
        let e = parse(&["--config", f.path().to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("`prot` is not a setting"), "{e}");
        let f = file("port = { a = 1 }\n");
        let e = parse(&["--config", f.path().to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("`port` must be"), "{e}");
        let f = file("port = \"many\"\n");
        let e = parse(&["--config", f.path().to_str().unwrap()]).unwrap_err();
        assert!(matches!(e, FileError::Args(_)), "{e}");
        let f = file("[socketio]\nnope = 1\n");
        let e = parse(&["--config", f.path().to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = parse(&["--config", "/nonexistent/wsgate.toml"]).unwrap_err();
        assert!(matches!(e, FileError::Read { .. }), "{e}");
    }

    #[test]
    fn without_a_file_nothing_changes() {
        let cli = parse(&["--port", "0"]).unwrap();
        assert_eq!(cli.config.port, 0);
        assert!(cli.config.socketio_file.events.is_empty());
    }
}
