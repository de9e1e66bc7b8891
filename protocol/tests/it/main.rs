//! The codec's integration tests, one binary: property tests and the replay
//! of the committed fuzz corpora.

mod properties;
mod regressions;
