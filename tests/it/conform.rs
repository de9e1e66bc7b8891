//! `chorus conform` end to end: the binary against the embedded gateway in
//! each profile, the strict suite against a seed gateway (exactly the
//! strict-only cases fail, with evidence), bad case files, an unreachable
//! target, `--only`, `--junit` and `--out`.

use std::collections::BTreeSet;
use std::process::Output;

use chorus::conform::{all_cases, load_builtin_files, Category, ProfileName};
use chorus_gateway::Profile;
use chorus_test_support::gateway;

use crate::support::harness::temp_dir;
use crate::support::verdict_lines::{names, stdout};

const SECRET: &str = "conform-test-secret";

/// Runs `chorus conform` with `args` (and `JWT_SECRET` set).
async fn conform(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .arg("conform")
        .args(args)
        .env("JWT_SECRET", SECRET)
        .output()
        .await
        .expect("run chorus conform")
}

/// The `FAIL` lines of `out` with their evidence, for an assertion message
/// that shows what failed before the whole output (CI logs cut the middle).
fn failures(out: &str) -> String {
    out.split("\nFAIL ")
        .skip(1)
        .map(|block| format!("FAIL {}", block.split("\nPASS ").next().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn assert_profile_passes(profile: &str, expected: ProfileName) {
    let output = conform(&["--profile", profile]).await;
    let out = stdout(&output);
    let failed = failures(&out);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{failed}\n--- whole output ---\n{out}"
    );
    // The cluster cases need several targets: one embedded gateway skips them.
    let applying: Vec<_> = all_cases(load_builtin_files().unwrap())
        .into_iter()
        .filter(|c| c.applies_to(expected))
        .collect();
    let of = |cluster: bool| -> BTreeSet<String> {
        applying
            .iter()
            .filter(|c| (c.category == Category::Cluster) == cluster)
            .map(|c| c.name.clone())
            .collect()
    };
    let (cases, cluster) = (of(false), of(true));
    assert!(!cluster.is_empty());
    assert_eq!(names(&out, "PASS "), cases, "{out}");
    assert_eq!(names(&out, "SKIP "), cluster, "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!(
            "{} passed, 0 failed, {} skipped",
            cases.len(),
            cluster.len()
        )
    );
}

#[tokio::test]
async fn seed_suite_passes_against_the_embedded_seed_gateway() {
    assert_profile_passes("seed", ProfileName::Seed).await;
}

#[tokio::test]
async fn strict_suite_passes_against_the_embedded_strict_gateway() {
    assert_profile_passes("strict", ProfileName::Strict).await;
}

#[tokio::test]
async fn strict_suite_against_a_seed_gateway_fails_exactly_the_strict_only_cases() {
    let gateway = chorus_test_support::gateway::start(gateway::config(Profile::Seed, SECRET)).await;
    let target = format!("http://{}", gateway.addr());
    let output = conform(&["--target", &target, "--profile", "strict"]).await;
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");

    // Expected from the case metadata: what the strict profile adds over seed,
    // except what needs a gateway the run controls (skipped with --target).
    let strict_only: Vec<_> = all_cases(load_builtin_files().unwrap())
        .into_iter()
        .filter(|c| c.applies_to(ProfileName::Strict) && !c.applies_to(ProfileName::Seed))
        .filter(|c| c.category != Category::Lifecycle && c.category != Category::Cluster)
        .collect();
    let categories: BTreeSet<Category> = strict_only.iter().map(|c| c.category).collect();
    assert_eq!(
        categories,
        BTreeSet::from([
            Category::Auth,
            Category::Validation,
            Category::Ack,
            Category::Limits,
            Category::Rooms
        ])
    );
    let expected: BTreeSet<String> = strict_only.into_iter().map(|c| c.name).collect();
    assert_eq!(names(&out, "FAIL "), expected, "{out}");

    // Each failure carries readable evidence right under its line.
    for block in out.split("\nFAIL ").skip(1) {
        let evidence: Vec<&str> = block
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    "))
            .collect();
        assert!(
            evidence.iter().any(|l| ["statement: §7", "statement: §8"]
                .iter()
                .any(|s| l.trim_start().starts_with(s))),
            "{block}"
        );
        assert!(evidence.iter().any(|l| l.contains("expected: ")), "{block}");
        assert!(
            evidence.iter().any(|l| l.trim_start().starts_with("got: ")),
            "{block}"
        );
    }
    let hs384 = out
        .split("\nFAIL strict.auth.hs384-token-refused\n")
        .nth(1)
        .expect("the hs384 case failed");
    assert!(hs384.contains("got: m connected with sid"), "{hs384}");
    assert!(
        names(&out, "SKIP ").contains("strict.lifecycle.shutdown-disconnects-namespace"),
        "{out}"
    );
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!(" passed, {} failed", expected.len())),
        "{last}"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn bad_case_yaml_gives_file_line_column_and_exit_2() {
    let dir = temp_dir("bad-yaml");
    let file = dir.join("broken.yml");
    std::fs::write(
        &file,
        "cases:\n  - name: x.y\n    profiles: [seed]\n    category: events\n    statement: s\n    clients: {a: {transport: carrier-pigeon}}\n    steps:\n      - connect: a\n",
    )
    .unwrap();
    let output = conform(&["--profile", "seed", "--cases", dir.to_str().unwrap()]).await;
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{}:6:", file.display())), "{err}");
    assert!(err.contains("carrier-pigeon"), "{err}");
}

#[tokio::test]
async fn unreachable_target_gives_one_line_and_exit_3() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let output = conform(&["--target", &format!("http://{addr}"), "--profile", "seed"]).await;
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unreachable"), "{err}");
}

#[tokio::test]
async fn only_filters_and_junit_and_out_are_written() {
    let dir = temp_dir("junit");
    let junit = dir.join("junit.xml");
    let output = conform(&[
        "--profile",
        "seed",
        "--only",
        "seed.auth.accepts-*",
        "--junit",
        junit.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ])
    .await;
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    let passed = names(&out, "PASS ");
    assert_eq!(passed.len(), 4, "{out}");
    assert!(
        passed.iter().all(|n| n.starts_with("seed.auth.accepts-")),
        "{out}"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit.xml written");
    assert!(xml.contains("tests=\"4\" failures=\"0\""), "{xml}");
    assert!(xml.contains("name=\"seed.auth.accepts-hs384\""), "{xml}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("conformance.json")).unwrap())
            .unwrap();
    assert_eq!(json["cases"].as_array().map(Vec::len), Some(4));
    assert_eq!(json["cases"][0]["status"], "pass");
}
