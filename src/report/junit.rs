//! `conformance.json` (the conformance suite's results) and its JUnit XML
//! rendering, `junit.xml`, for CI test-report viewers.
//!
//! ```json
//! {"cases": [{"name": "handshake.sid", "status": "pass", "evidence": null, "duration_ms": 12.5}]}
//! ```

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::markup::{escape_xml, json_text};

/// Outcome of one conformance case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseStatus {
    /// The gateway behaved as the protocol requires.
    Pass,
    /// It did not; `evidence` says how.
    Fail,
    /// The case was not run.
    Skipped,
}

/// One conformance case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConformanceCase {
    /// Case name, e.g. `handshake.sid`.
    pub name: String,
    /// Outcome.
    pub status: CaseStatus,
    /// What was observed (a string or any JSON value), mainly for failures.
    #[serde(default)]
    pub evidence: serde_json::Value,
    /// How long the case took.
    #[serde(default)]
    pub duration_ms: f64,
}

/// The whole `conformance.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conformance {
    /// Every case, in run order.
    pub cases: Vec<ConformanceCase>,
}

/// Renders the cases as one JUnit `<testsuite>` named `suite`.
pub fn render_junit(conformance: &Conformance, suite: &str) -> String {
    let count = |status| {
        conformance
            .cases
            .iter()
            .filter(|c| c.status == status)
            .count()
    };
    let seconds: f64 = conformance.cases.iter().map(|c| c.duration_ms).sum::<f64>() / 1000.0;
    let suite = escape_xml(suite);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{suite}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{seconds:.3}\">",
        conformance.cases.len(),
        count(CaseStatus::Fail),
        count(CaseStatus::Skipped),
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{seconds:.3}\">",
        conformance.cases.len(),
        count(CaseStatus::Fail),
        count(CaseStatus::Skipped),
    );
    for case in &conformance.cases {
        let _ = write!(
            out,
            "    <testcase classname=\"{suite}\" name=\"{}\" time=\"{:.3}\"",
            escape_xml(&case.name),
            case.duration_ms / 1000.0
        );
        let evidence = escape_xml(&json_text(&case.evidence));
        match case.status {
            CaseStatus::Pass => out.push_str("/>\n"),
            CaseStatus::Fail => {
                let first_line = evidence.lines().next().unwrap_or("failed");
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{first_line}\">{evidence}</failure>\n    </testcase>"
                );
            }
            CaseStatus::Skipped => {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{evidence}\"/>\n    </testcase>"
                );
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_pass_fail_and_skipped_cases() {
        let conformance: Conformance = serde_json::from_str(
            r#"{"cases": [
                {"name": "handshake.sid", "status": "pass", "duration_ms": 1500},
                {"name": "ack <id>", "status": "fail", "evidence": "got \"43\" & no id\nsecond line", "duration_ms": 250},
                {"name": "polling", "status": "skipped", "evidence": {"reason": "websocket only"}}
            ]}"#,
        )
        .expect("conformance.json");
        let xml = render_junit(&conformance, "chorus conformance");
        assert!(xml.contains(
            "<testsuite name=\"chorus conformance\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\" time=\"1.750\">"
        ), "{xml}");
        assert!(xml.contains(
            "<testcase classname=\"chorus conformance\" name=\"handshake.sid\" time=\"1.500\"/>"
        ));
        assert!(
            xml.contains("name=\"ack &lt;id&gt;\" time=\"0.250\">"),
            "{xml}"
        );
        assert!(xml.contains(
            "<failure message=\"got &quot;43&quot; &amp; no id\">got &quot;43&quot; &amp; no id\nsecond line</failure>"
        ), "{xml}");
        assert!(
            xml.contains("<skipped message=\"{&quot;reason&quot;:&quot;websocket only&quot;}\"/>"),
            "{xml}"
        );
        assert!(xml.ends_with("</testsuite>\n</testsuites>\n"));
    }

    #[test]
    fn rejects_unknown_status() {
        let bad = r#"{"cases": [{"name": "x", "status": "maybe"}]}"#;
        assert!(serde_json::from_str::<Conformance>(bad).is_err());
    }
}
