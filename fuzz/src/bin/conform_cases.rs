//! Conformance case files (`chorus::conform::parse_cases`, what
//! `chorus conform --cases DIR` loads): the first part is the case YAML, the
//! second a `--case` glob. Nothing panics; every case name matches itself
//! and `*` as a glob, and the glob is matched against every case name.
use chorus::conform::{all_cases, glob_match, parse_cases};
use chorus_fuzz::{split, PART};

fn main() {
    chorus_fuzz::abort_on_panic();
    afl::fuzz_nohook!(|data: &[u8]| {
        let parts = split(data, PART);
        let Ok(text) = std::str::from_utf8(parts[0]) else {
            return;
        };
        let pattern = parts.get(1).and_then(|p| std::str::from_utf8(p).ok());
        let Ok(loaded) = parse_cases(text, "fuzz.yml") else {
            return;
        };
        let names: Vec<String> = loaded.iter().map(|c| c.spec.name.clone()).collect();
        for name in &names {
            assert!(glob_match("*", name), "`*` matches {name:?}");
            assert!(glob_match(name, name), "{name:?} matches itself");
            if let Some(pattern) = pattern {
                std::hint::black_box(glob_match(pattern, name));
            }
        }
        let cases = all_cases(loaded);
        assert!(cases.len() >= names.len(), "loaded cases are kept");
    });
}
