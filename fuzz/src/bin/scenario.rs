//! Scenario YAML (`chorus::scenario::Scenario::from_str_with_overrides`):
//! the first part is the scenario text, each further part (after a line
//! holding `%%`) one `--set key=value`. Loading never panics, and what loads
//! can be planned (phase counts and durations, group picks, per-user vars,
//! think times, loop and message schedules) without panicking.
use chorus::scenario::{Override, Scenario};
use chorus_fuzz::{split, PART};

fn main() {
    chorus_fuzz::abort_on_panic();
    std::env::set_var("JWT_SECRET", "fuzz-secret");
    let origin = chorus_fuzz::scratch_dir("scenario").join("fuzz.yml");
    let origin = origin.display().to_string();
    afl::fuzz_nohook!(|data: &[u8]| {
        let parts = split(data, PART);
        let Ok(text) = std::str::from_utf8(parts[0]) else {
            return;
        };
        let overrides: Vec<Override> = parts[1..]
            .iter()
            .filter_map(|p| std::str::from_utf8(p).ok())
            .filter_map(|spec| Override::parse(spec).ok())
            .collect();
        if let Ok(scenario) = Scenario::from_str_with_overrides(text, &origin, &overrides) {
            chorus_fuzz::scenario_checks::exercise(&scenario);
        }
    });
}
