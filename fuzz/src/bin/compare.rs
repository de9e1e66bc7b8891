//! `chorus compare` inputs: two `summary.json` files (read with
//! `chorus::metrics::Summary::read`, as the CLI does) and `--tolerance` rules,
//! one per line. Parts: baseline, current, rules. Nothing panics; a summary
//! compared with itself under the default tolerances never regresses; the
//! verdict agrees with the listed regressions; both renderings are produced.
use chorus::metrics::Summary;
use chorus::report::{compare, Tolerances};
use chorus_fuzz::{split, PART};

fn main() {
    chorus_fuzz::abort_on_panic();
    let dir = chorus_fuzz::scratch_dir("compare");
    let (base_path, cur_path) = (dir.join("baseline.json"), dir.join("current.json"));
    afl::fuzz_nohook!(|data: &[u8]| {
        let parts = split(data, PART);
        let current_bytes = parts.get(1).copied().unwrap_or(parts[0]);
        std::fs::write(&base_path, parts[0]).expect("scratch write");
        std::fs::write(&cur_path, current_bytes).expect("scratch write");
        let rules: Vec<&str> = parts
            .get(2)
            .and_then(|p| std::str::from_utf8(p).ok())
            .map(|t| t.lines().collect())
            .unwrap_or_default();
        let tolerances = Tolerances::parse(rules.iter().copied()).ok();
        let Ok(baseline) = Summary::read(&base_path) else {
            return;
        };
        let same = compare(&baseline, &baseline, &Tolerances::new());
        assert!(
            !same.regressed(),
            "a summary regressed against itself: {}",
            same.render_text()
        );
        let Ok(current) = Summary::read(&cur_path) else {
            return;
        };
        let comparison = compare(&baseline, &current, &tolerances.unwrap_or_default());
        assert_eq!(
            comparison.regressed(),
            comparison.regressions().next().is_some(),
            "the verdict agrees with the regressions listed"
        );
        std::hint::black_box((comparison.render_text(), comparison.render_markdown()));
        for row in &comparison.rows {
            std::hint::black_box((row.change(), row.relative_change()));
        }
    });
}
