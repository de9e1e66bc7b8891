//! Playing the load phases: starting virtual users as `ramp`, `hold` and
//! `arrive` say, then ending the run cleanly.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::context::Context;
use super::vu::{Stage, Vu};
use super::DELIVERY_DEADLINE;
use crate::scenario::Phase;

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
    let mut picker = ctx.scenario.group_picker();
    let shard = ctx.shard;
    // Every process numbers and assigns all virtual users alike; each plays its own.
    let mut next_vu = 0u32;
    // An arrival over a phase's `max` still takes its number, so shards stay in step.
    let mut spawn =
        |vus: &mut JoinSet<()>, stages: &mut Vec<watch::Sender<Stage>>, capped: bool| {
            let Some(group) = picker.next_group() else {
                return;
            };
            let k = next_vu;
            next_vu += 1;
            if !shard.owns(k) {
                return;
            }
            if capped {
                ctx.recorder.add(ctx.ids.arrivals_dropped, 1);
                return;
            }
            let (tx, rx) = watch::channel(Stage::Running);
            vus.spawn(Vu::new(ctx.clone(), k, group).run(rx));
            stages.push(tx);
        };
    let phases = ctx.scenario.load.phases.clone();
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
                    phase.send_replace(format!("arrive {}/{count}", i + 1));
                    // Shards draw the same arrival times, so together they make one run's.
                    let mut rng = if shard.count > 1 {
                        rand::rngs::SmallRng::seed_from_u64(i as u64)
                    } else {
                        rand::rngs::SmallRng::from_rng(&mut rand::rng())
                    };
                    let max = max.map(|m| m.div_ceil(u64::from(shard.count)));
                    let mut at = start;
                    loop {
                        at += arrival.next_gap(*rate, &mut rng);
                        if at >= start + *duration {
                            break;
                        }
                        tokio::time::sleep_until(at).await;
                        let capped = max.is_some_and(|m| ctx.connected.load(Relaxed) >= m as i64);
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
