//! What the run derives from a loaded scenario, exercised the way `chorus run`
//! does before and while it plays it: a scenario that loads must not make any
//! of these panic.
use chorus::scenario::{Scenario, Step};
use rand::SeedableRng;

/// Derives everything cheap from `scenario`.
pub fn exercise(scenario: &Scenario) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    std::hint::black_box(scenario.phases_duration());
    for phase in &scenario.load.phases {
        std::hint::black_box((phase.arrivals(), phase.duration()));
    }
    let mut picker = scenario.group_picker();
    for _ in 0..8 {
        std::hint::black_box(picker.next_group());
    }
    let tokens = scenario.token_source().ok().flatten();
    for vu in 0..3 {
        let _ = std::hint::black_box(scenario.vu_state(vu, tokens.as_ref(), &mut rng));
    }
    if let Some(schedule) = &scenario.load.messages {
        // As the run claims global message slots (one shard).
        let slot = std::time::Instant::now();
        std::hint::black_box(slot + schedule.arrival.next_gap(schedule.rate, &mut rng));
    }
    for group in &scenario.groups {
        walk(&group.flow, &mut rng, 0);
    }
}

fn walk(steps: &[Step], rng: &mut rand::rngs::StdRng, depth: usize) {
    if depth > 16 {
        return;
    }
    for step in steps {
        match step {
            Step::Think(think) => {
                std::hint::black_box(think.sample(rng));
            }
            Step::Loop(l) => {
                if let Some(rate) = l.rate {
                    // As a virtual user schedules its loop iterations.
                    let mut next = std::time::Instant::now();
                    for _ in 0..2 {
                        next += l.arrival.next_gap(rate, rng);
                    }
                    std::hint::black_box(next);
                }
                walk(&l.steps, rng, depth + 1)
            }
            _ => {}
        }
    }
}
