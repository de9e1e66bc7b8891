//! Installs the official socket.io npm packages that the interop tests drive,
//! once per machine, so that `cargo test` alone works on a fresh clone.
//!
//! Test binaries run in parallel, so the install is guarded by an exclusive
//! lock file; whoever gets it first runs `npm ci`, the others then find
//! `node_modules` in place.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The folder holding `package.json` and `node_modules` for the interop tests.
pub fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("tests/js/package.json").exists())
        .expect("tests/js/package.json in this crate or a parent")
        .join("tests/js")
}

/// Makes sure `tests/js/node_modules` is installed and returns the `tests/js` folder.
pub fn ensure_node_modules() -> PathBuf {
    ensure_installed(js_dir())
}

/// Makes sure `tests/js/v2/node_modules` (socket.io 2.5 and its client, the
/// Engine.IO v3 peers) is installed and returns the `tests/js/v2` folder.
pub fn ensure_v2_node_modules() -> PathBuf {
    ensure_installed(js_dir().join("v2"))
}

/// Runs `npm ci` in `dir` unless its `node_modules` is in place and no
/// older than its `package-lock.json` (a lock file changed by a pull gets
/// its packages installed); one lock file in `tests/js` serialises the
/// installs of every folder.
fn ensure_installed(dir: PathBuf) -> PathBuf {
    let marker = dir.join("node_modules/.package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let current = || match (modified(&marker), modified(&dir.join("package-lock.json"))) {
        (Some(installed), Some(wanted)) => installed >= wanted,
        (installed, _) => installed.is_some(),
    };
    if current() {
        return dir;
    }
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(js_dir().join(".install.lock"))
        .expect("open the npm install lock file");
    lock.lock().expect("take the npm install lock");
    if !current() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("run npm (Node.js and npm must be installed)");
        assert!(status.success(), "npm ci failed in {}", dir.display());
    }
    dir
}
