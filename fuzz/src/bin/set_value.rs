//! `--set key=value` overrides (`chorus::scenario::Override::parse`) applied
//! to the shipped `scenarios/smoke.yml`, one spec per line: parsing a spec
//! keeps its key and value exactly, applying specs never panics, and a
//! scenario that still loads can be planned without panicking.
use chorus::scenario::{Override, Scenario};

fn main() {
    chorus_fuzz::abort_on_panic();
    std::env::set_var("JWT_SECRET", "fuzz-secret");
    let path = chorus_fuzz::repo_root().join("scenarios/smoke.yml");
    let smoke = std::fs::read_to_string(&path).expect("scenarios/smoke.yml");
    let origin = path.display().to_string();
    afl::fuzz_nohook!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let mut overrides = Vec::new();
        for spec in text.lines() {
            if let Ok(o) = Override::parse(spec) {
                let (key, value) = spec.split_once('=').expect("a parsed spec has '='");
                assert_eq!(o.key, key.trim(), "the key is the text before '=', trimmed");
                assert_eq!(o.value, value, "the value is kept as written");
                overrides.push(o);
            }
        }
        if let Ok(scenario) = Scenario::from_str_with_overrides(&smoke, &origin, &overrides) {
            chorus_fuzz::scenario_checks::exercise(&scenario);
        }
    });
}
