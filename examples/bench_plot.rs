//! Draws `bench/gateway.sh sweep`'s results as one SVG chart: delivery rate
//! (x) against `delivery.newMessage` p99 (y, logarithmic), one line per server, with the
//! report's own chart code.
//!
//! `bench_plot <gateway-sweep.jsonl> <out.svg>`: each input line is a JSON
//! object with `server`, `deliveries_per_s_median` and `p99_ms`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde_json::Value;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        bail!("usage: bench_plot <gateway-sweep.jsonl> <out.svg>");
    };
    let text = std::fs::read_to_string(input).with_context(|| format!("read {input}"))?;
    let mut by_server: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let run: Value =
            serde_json::from_str(line).with_context(|| format!("{input}:{}: not JSON", i + 1))?;
        let field = |name: &str| {
            run.get(name)
                .and_then(Value::as_f64)
                .with_context(|| format!("{input}:{}: no number `{name}`", i + 1))
        };
        let server = run
            .get("server")
            .and_then(Value::as_str)
            .with_context(|| format!("{input}:{}: no `server`", i + 1))?;
        by_server
            .entry(server.to_owned())
            .or_default()
            .push((field("deliveries_per_s_median")?, field("p99_ms")?));
    }
    if by_server.is_empty() {
        bail!("{input}: no runs to draw");
    }
    let series: Vec<(String, Vec<(f64, f64)>)> = by_server.into_iter().collect();
    let svg = chorus::report::rate_latency_svg(
        "delivery.newMessage p99 against deliveries per second, per server",
        &series,
    );
    std::fs::write(output, svg).with_context(|| format!("write {output}"))?;
    println!("wrote {output} ({} servers)", series.len());
    Ok(())
}
