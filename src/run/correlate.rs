//! The correlation mark the driver appends to the text of each message it
//! sends, so that every receiver can tell who sent it, its place in the
//! sender's sequence, and when it was meant to go and did go, without any
//! shared lookup: ` #chorus/<vu>/<seq>/<intended µs>/<sent µs>` (times since
//! the run's epoch).

use std::fmt::Write as _;

const PREFIX: &str = " #chorus/";

/// What a mark says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The sending virtual user.
    pub vu: u32,
    /// The sender's message number, from 0.
    pub seq: u64,
    /// When the schedule meant the message to be sent (µs since the epoch).
    pub intended_us: u64,
    /// When it was handed to the socket (µs since the epoch).
    pub sent_us: u64,
}

impl Mark {
    /// Appends the mark to a message text.
    pub fn append_to(&self, text: &mut String) {
        let _ = write!(
            text,
            "{PREFIX}{}/{}/{}/{}",
            self.vu, self.seq, self.intended_us, self.sent_us
        );
    }

    /// Finds the mark at the end of a received message text.
    pub fn find(text: &str) -> Option<Mark> {
        let at = text.rfind(PREFIX)?;
        let mut parts = text[at + PREFIX.len()..].split('/');
        let mut next = || parts.next()?.parse::<u64>().ok();
        let mark = Mark {
            vu: u32::try_from(next()?).ok()?,
            seq: next()?,
            intended_us: next()?,
            sent_us: next()?,
        };
        parts.next().is_none().then_some(mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_reject_noise() {
        let mark = Mark {
            vu: 7,
            seq: 42,
            intended_us: 1_000,
            sent_us: 1_250,
        };
        let mut text = String::from("hello 3");
        mark.append_to(&mut text);
        assert_eq!(text, "hello 3 #chorus/7/42/1000/1250");
        assert_eq!(Mark::find(&text), Some(mark));
        assert_eq!(Mark::find("hello"), None);
        assert_eq!(Mark::find("x #chorus/1/2/3"), None);
        assert_eq!(Mark::find("x #chorus/1/2/3/4/5"), None);
        assert_eq!(Mark::find("x #chorus/a/2/3/4"), None);
    }
}
