//! Helpers shared by the fuzz targets in `src/bin/`.
//!
//! Each target is an AFL++ persistent-mode binary (`afl::fuzz!`): built with
//! `cargo afl build --release` it is driven by `afl-fuzz`; built plainly it
//! reads one input from stdin, which is how `run.sh` replays what AFL found.
//! Every target asserts invariants beyond "no panic" where it can: a failed
//! assertion aborts the process and AFL records the input as a crash.

pub mod live;
pub mod scenario_checks;

/// Makes any panic, on any thread (a gateway task included), print its
/// message and abort the process, so AFL records the input as a crash.
pub fn abort_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("fuzz target panicked: {info}");
        std::process::abort();
    }));
}

/// Splits `data` on every occurrence of `sep` (which may be longer than one byte).
pub fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = find(rest, sep) {
        parts.push(&rest[..at]);
        rest = &rest[at + sep.len()..];
    }
    parts.push(rest);
    parts
}

/// The first index of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The separator between the parts of a multi-part input (several files,
/// several frames, several HTTP responses): a line holding only `%%`.
pub const PART: &[u8] = b"\n%%\n";

/// A fresh, empty scratch directory for one target (under `$FUZZ_TMP`, or
/// the system temporary directory), named after the target and process.
pub fn scratch_dir(target: &str) -> std::path::PathBuf {
    let base = std::env::var_os("FUZZ_TMP")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("chorus-fuzz-{target}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Copies the directory tree `from` into `to` (created if missing).
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// The repository root (the parent of `fuzz/`), for files the targets read
/// (scenarios, run directories).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ has a parent")
        .to_path_buf()
}
