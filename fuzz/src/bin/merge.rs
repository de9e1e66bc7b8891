//! `chorus merge` inputs: shard run directories (`chorus::run::merge`). Two
//! copies of a real run directory (`fuzz/fixtures/run-memory-10`, a real 10-client run) are merged after
//! one file of the first is replaced by the fuzz input; the flag byte picks
//! which: `summary.json`, `timeseries.json`, `violations.json`,
//! `scenario.yml`, an interval log, or `ledger.json` (then written into both
//! shards). Nothing panics; a merge that succeeds writes a `summary.json`
//! that `chorus compare` can read back.
use std::path::Path;

use chorus::metrics::Summary;

const FILES: [&str; 6] = [
    "summary.json",
    "timeseries.json",
    "violations.json",
    "scenario.yml",
    "hdr/connect.hlog",
    "ledger.json",
];

fn main() {
    chorus_fuzz::abort_on_panic();
    let template = chorus_fuzz::repo_root().join("fuzz/fixtures/run-memory-10");
    let scratch = chorus_fuzz::scratch_dir("merge");
    let (a, b, out) = (scratch.join("a"), scratch.join("b"), scratch.join("out"));
    chorus_fuzz::copy_tree(&template, &a).expect("copy the run directory");
    chorus_fuzz::copy_tree(&template, &b).expect("copy the run directory");
    let restore = |dir: &Path, file: &str| {
        let original = template.join(file);
        if original.exists() {
            std::fs::copy(&original, dir.join(file)).expect("restore");
        } else {
            let _ = std::fs::remove_file(dir.join(file));
        }
    };
    afl::fuzz_nohook!(|data: &[u8]| {
        let Some((&flag, rest)) = data.split_first() else {
            return;
        };
        let file = FILES[usize::from(flag) % FILES.len()];
        std::fs::write(a.join(file), rest).expect("scratch write");
        if file == "ledger.json" {
            std::fs::write(b.join(file), rest).expect("scratch write");
        }
        let _ = std::fs::remove_dir_all(&out);
        if let Ok(merged) = chorus::run::merge(&[a.clone(), b.clone()], &out) {
            let written = Summary::read(&out).expect("merge writes a readable summary.json");
            assert_eq!(written.schema, merged.schema);
        }
        restore(&a, file);
        restore(&b, file);
    });
}
