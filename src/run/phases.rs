//! Playing the load phases: starting virtual users as `ramp`, `hold` and
//! `arrive` say, then ending the run cleanly.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::context::Context;
use super::failure::supervise;
use super::ledger::DELIVERY_DEADLINE;
use super::vu::{Stage, Vu};
use crate::scenario::{Arrival, Phase};

/// The start offsets of an `arrive` phase's clients, from the phase's start:
/// exactly `count` of them, ascending, all within `[0, duration)`.
/// `constant` spaces them `1/rate` apart from 0; `poisson` draws them as a
/// Poisson process of that rate conditioned on its count (the sorted
/// uniform order statistics, generated one at a time), so the count is exact
/// and the gaps are exponential-like.
pub struct Arrivals<'r, R> {
    count: u64,
    next: u64,
    rate: f64,
    duration: Duration,
    arrival: Arrival,
    /// The previous Poisson offset as a fraction of `duration`.
    fraction: f64,
    rng: &'r mut R,
}

impl<'r, R: rand::Rng> Arrivals<'r, R> {
    /// The schedule of `count` arrivals at `rate` per second over `duration`.
    pub fn new(
        count: u64,
        rate: f64,
        duration: Duration,
        arrival: Arrival,
        rng: &'r mut R,
    ) -> Self {
        Self {
            count,
            next: 0,
            rate,
            duration,
            arrival,
            fraction: 0.0,
            rng,
        }
    }
}

impl<R: rand::Rng> Iterator for Arrivals<'_, R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.next >= self.count {
            return None;
        }
        let k = self.next;
        self.next += 1;
        let secs = match self.arrival {
            Arrival::Constant => k as f64 / self.rate,
            Arrival::Poisson => {
                // The next of the remaining `left` sorted uniforms on (fraction, 1).
                let left = (self.count - k) as f64;
                let v: f64 = 1.0 - self.rng.random::<f64>(); // (0, 1]
                self.fraction = 1.0 - (1.0 - self.fraction) * v.powf(1.0 / left);
                self.fraction * self.duration.as_secs_f64()
            }
        };
        // Never at or past the phase's end, whatever the rounding.
        let offset = Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO);
        Some(offset.min(self.duration.saturating_sub(Duration::from_micros(1))))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.count - self.next).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

/// Starts virtual users as the phases say, then ends the run: lets the flows
/// finish (or not, when `end` says so), stops the senders, drains, and
/// disconnects whoever is left.
pub async fn drive(
    ctx: Arc<Context>,
    phase: watch::Sender<String>,
    mut end: watch::Receiver<bool>,
) {
    let mut vus = JoinSet::new();
    let mut stages: Vec<watch::Sender<Stage>> = Vec::new();
    let mut picker = ctx.plan.scenario.group_picker();
    let shard = ctx.plan.shard;
    // Every process numbers and assigns all virtual users alike; each plays its own.
    let mut next_vu = 0u32;
    // An arrival over a phase's `max` still takes its number, so shards stay in step.
    let mut spawn =
        |vus: &mut JoinSet<bool>, stages: &mut Vec<watch::Sender<Stage>>, capped: bool| {
            let Some(group) = picker.next_group() else {
                return;
            };
            let k = next_vu;
            next_vu += 1;
            if !shard.owns(k) {
                return;
            }
            if capped {
                ctx.recorder.add(ctx.plan.ids.arrivals_dropped, 1);
                return;
            }
            let (tx, rx) = watch::channel(Stage::Running);
            let vu = Vu::new(ctx.clone(), k, group).run(rx);
            vus.spawn(supervise(k, vu, ctx.recorder.clone(), ctx.plan.ids.panics));
            stages.push(tx);
        };
    let phases = ctx.plan.scenario.load.phases.clone();
    let count = phases.len();
    let play_phases = async {
        let mut level = 0u64;
        for (i, p) in phases.iter().enumerate() {
            let start = tokio::time::Instant::now();
            match p {
                Phase::Ramp { to, over } => {
                    phase.send_replace(format!("ramp {}/{count}", i + 1));
                    let steps = to.abs_diff(level);
                    for k in 0..steps {
                        tokio::time::sleep_until(start + over.mul_f64(k as f64 / steps as f64))
                            .await;
                        if *to > level {
                            spawn(&mut vus, &mut stages, false);
                        } else if !shard.owns(k as u32) {
                            // Another shard stops this one.
                        } else if let Some(s) = stages
                            .iter()
                            .find(|s| !s.is_closed() && *s.borrow() == Stage::Running)
                        {
                            s.send_replace(Stage::Disconnect);
                        }
                    }
                    level = *to;
                    tokio::time::sleep_until(start + *over).await;
                }
                Phase::Hold(d) => {
                    phase.send_replace(format!("hold {}/{count}", i + 1));
                    tokio::time::sleep(*d).await;
                }
                Phase::Arrive {
                    rate,
                    duration,
                    max,
                    arrival,
                } => {
                    // Exactly `rate × duration` arrivals, all within the phase.
                    phase.send_replace(format!("arrive {}/{count}", i + 1));
                    // Shards draw the same arrival times, so together they make one run's.
                    let mut rng = if shard.count > 1 {
                        rand::rngs::SmallRng::seed_from_u64(i as u64)
                    } else {
                        rand::rngs::SmallRng::from_rng(&mut rand::rng())
                    };
                    let max = max.map(|m| m.div_ceil(u64::from(shard.count)));
                    for offset in Arrivals::new(p.arrivals(), *rate, *duration, *arrival, &mut rng)
                    {
                        tokio::time::sleep_until(start + offset).await;
                        let capped = max.is_some_and(|m| ctx.clients.now_connected() >= m as i64);
                        spawn(&mut vus, &mut stages, capped);
                    }
                    tokio::time::sleep_until(start + *duration).await;
                }
            }
        }
    };
    tokio::select! {
        _ = play_phases => {}
        _ = end.wait_for(|e| *e) => {}
    }
    phase.send_replace("finishing".into());
    let finished = async { while vus.join_next().await.is_some() {} };
    tokio::select! {
        _ = finished => {}
        _ = end.wait_for(|e| *e) => {}
    }
    if !vus.is_empty() {
        phase.send_replace("draining".into());
        for s in &stages {
            s.send_replace(Stage::StopSending);
        }
        tokio::time::sleep(DELIVERY_DEADLINE).await;
        for s in &stages {
            s.send_replace(Stage::Disconnect);
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while vus.join_next().await.is_some() {}
        })
        .await;
        vus.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn arrive(rate: f64, secs: f64, arrival: Arrival) -> Phase {
        Phase::Arrive {
            rate,
            duration: Duration::from_secs_f64(secs),
            max: None,
            arrival,
        }
    }

    fn offsets(phase: &Phase) -> Vec<Duration> {
        let Phase::Arrive {
            rate,
            duration,
            arrival,
            ..
        } = phase
        else {
            unreachable!("an arrive phase")
        };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        Arrivals::new(phase.arrivals(), *rate, *duration, *arrival, &mut rng).collect()
    }

    #[test]
    fn an_arrive_phase_starts_exactly_rate_times_duration_clients() {
        for arrival in [Arrival::Constant, Arrival::Poisson] {
            // The case that started 199.
            let phase = arrive(20.0, 10.0, arrival);
            assert_eq!(phase.arrivals(), 200);
            let at = offsets(&phase);
            assert_eq!(at.len(), 200, "{arrival:?}");
            assert!(at.windows(2).all(|w| w[0] <= w[1]), "ascending");
            assert!(at.iter().all(|d| *d < Duration::from_secs(10)));
            // 600/m for 30 s, 1/h for 1 h, 2.5/s for 3 s (7.5 rounds down).
            assert_eq!(offsets(&arrive(10.0, 30.0, arrival)).len(), 300);
            assert_eq!(offsets(&arrive(1.0 / 3600.0, 3600.0, arrival)).len(), 1);
            assert_eq!(offsets(&arrive(2.5, 3.0, arrival)).len(), 7);
            assert_eq!(offsets(&arrive(0.1, 1.0, arrival)).len(), 0);
        }
    }

    #[test]
    fn constant_arrivals_are_evenly_spaced_from_the_start() {
        let at = offsets(&arrive(20.0, 10.0, Arrival::Constant));
        assert_eq!(at[0], Duration::ZERO);
        assert_eq!(at[1], Duration::from_millis(50));
        assert_eq!(at[199], Duration::from_millis(9950));
    }

    #[test]
    fn poisson_arrivals_spread_over_the_whole_phase() {
        let at = offsets(&arrive(100.0, 10.0, Arrival::Poisson));
        assert_eq!(at.len(), 1000);
        let first_half = at.iter().filter(|d| **d < Duration::from_secs(5)).count();
        assert!((400..=600).contains(&first_half), "{first_half}");
        assert!(at[999] > Duration::from_secs(9), "{:?}", at[999]);
        // Not evenly spaced: some gaps are far from the mean of 10 ms.
        let gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        assert!(gaps.iter().any(|g| *g > 0.03), "no long gap");
        assert!(gaps.iter().any(|g| *g < 0.002), "no short gap");
    }
}
