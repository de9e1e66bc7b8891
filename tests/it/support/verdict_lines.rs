//! Reading what `chorus conform` printed: its stdout, and the case names of
//! its `PASS` / `FAIL` / `SKIP` lines.

use std::collections::BTreeSet;
use std::process::Output;

/// The process's stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The case names of the lines that start with `prefix` (`PASS `, `FAIL `, `SKIP `).
pub fn names(out: &str, prefix: &str) -> BTreeSet<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|rest| rest.split(' ').next().unwrap_or_default().to_owned())
        .collect()
}
