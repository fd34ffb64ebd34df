//! Real JavaScript clients: the pinned packages of `tests/js/` installed once (`npm ci`, under
//! a lock directory, since test binaries run in parallel), then `node tests/js/<script>.mjs
//! <args>`, whose last line of output is a JSON verdict. Without node or npm the test fails,
//! saying so: it never passes by skipping.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// The folder of the JavaScript clients.
pub fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Whether this process has checked the install already.
static INSTALLED: Mutex<bool> = Mutex::new(false);

/// A lock older than this was left by a killed run: it is taken over.
const STALE_LOCK: Duration = Duration::from_secs(600);

/// Installs `tests/js/node_modules` from the lockfile if it is missing (once per process;
/// other processes wait on the lock directory meanwhile).
pub fn ensure_installed() {
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed {
        return;
    }
    let dir = js_dir();
    let marker = dir.join("node_modules/.package-lock.json");
    let lock = dir.join(".npm-ci.lock");
    let deadline = Instant::now() + STALE_LOCK;
    loop {
        if marker.exists() && !lock.exists() {
            break;
        }
        match std::fs::create_dir(&lock) {
            Ok(()) => {
                let result = if marker.exists() {
                    Ok(())
                } else {
                    npm_ci(&dir)
                };
                let _ = std::fs::remove_dir(&lock);
                if let Err(e) = result {
                    panic!("{e}");
                }
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let age = std::fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok());
                if age.is_some_and(|a| a > STALE_LOCK) {
                    let _ = std::fs::remove_dir(&lock);
                }
                assert!(
                    Instant::now() < deadline,
                    "waited 10 minutes for another test's `npm ci` ({} exists)",
                    lock.display()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("cannot create {}: {e}", lock.display()),
        }
    }
    *installed = true;
}

fn npm_ci(dir: &Path) -> Result<(), String> {
    let out = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(dir)
        .output()
        .map_err(|e| {
            format!(
                "cannot run npm ({e}): the Engine.IO tests drive the real JavaScript clients \
                 and need Node.js 18+ with npm (apt-get install nodejs npm)"
            )
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "npm ci --prefix tests/js failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// What a script printed.
#[derive(Debug)]
pub struct NodeRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl NodeRun {
    /// The verdict: the last line of standard output, as JSON.
    pub fn verdict(&self) -> Value {
        let last = self.stdout.lines().last().unwrap_or("");
        serde_json::from_str(last).unwrap_or_else(|e| {
            panic!(
                "no JSON verdict ({e}); stdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `node tests/js/<script> <args>` (after [`ensure_installed`]), for at most a minute.
pub async fn run(script: &str, args: &[&str]) -> NodeRun {
    tokio::task::spawn_blocking(ensure_installed).await.unwrap();
    let child = tokio::process::Command::new("node")
        .arg(js_dir().join(script))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .unwrap_or_else(|_| panic!("node {script} ran past a minute"))
        .unwrap_or_else(|e| {
            panic!("cannot run node ({e}): the Engine.IO tests need Node.js 18+ on the PATH")
        });
    NodeRun {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
