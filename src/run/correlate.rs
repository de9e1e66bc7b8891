//! The correlation mark the driver appends to the text of each message it
//! sends, so that every receiver can tell who sent it, its place in the
//! sender's sequence, and when it was meant to go and did go, without any
//! shared lookup: ` #chorus/<vu>/<seq>/<intended µs>/<sent µs>`, both times
//! [`WallTime`]s (wall-clock µs since the UNIX epoch, so that receivers in
//! other shards read them alike).

use std::fmt::Write as _;

use super::clock::WallTime;

const PREFIX: &str = " #chorus/";

/// What a mark says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The sending virtual user.
    pub vu: u32,
    /// The sender's message number, from 0.
    pub seq: u64,
    /// When the schedule meant the message to be sent.
    pub intended: WallTime,
    /// When it was handed to the socket.
    pub sent: WallTime,
}

impl Mark {
    /// Appends the mark to a message text.
    pub fn append_to(&self, text: &mut String) {
        let _ = write!(
            text,
            "{PREFIX}{}/{}/{}/{}",
            self.vu,
            self.seq,
            self.intended.as_micros(),
            self.sent.as_micros()
        );
    }

    /// Finds the mark at the end of a received message text.
    pub fn find(text: &str) -> Option<Mark> {
        // Only digits and slashes follow a mark's `#`, so it is the last `#`
        // of the text: a byte search, cheaper than a substring one.
        let hash = text.bytes().rposition(|b| b == b'#')?;
        let at = hash.checked_sub(1)?;
        if !text.as_bytes()[at..].starts_with(PREFIX.as_bytes()) {
            return None;
        }
        let mut parts = text[at + PREFIX.len()..].split('/');
        let mut next = || parts.next()?.parse::<u64>().ok();
        let mark = Mark {
            vu: u32::try_from(next()?).ok()?,
            seq: next()?,
            intended: WallTime::from_micros(next()?),
            sent: WallTime::from_micros(next()?),
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
            intended: WallTime::from_micros(1_000),
            sent: WallTime::from_micros(1_250),
        };
        let mut text = String::from("hello 3");
        mark.append_to(&mut text);
        assert_eq!(text, "hello 3 #chorus/7/42/1000/1250");
        assert_eq!(Mark::find(&text), Some(mark));
        assert_eq!(Mark::find("hello"), None);
        assert_eq!(Mark::find("x #chorus/1/2/3"), None);
        assert_eq!(Mark::find("x #chorus/1/2/3/4/5"), None);
        assert_eq!(Mark::find("x #chorus/a/2/3/4"), None);
        assert_eq!(Mark::find("#chorus/1/2/3/4"), None, "no space before");
        assert_eq!(Mark::find("é#chorus/1/2/3/4"), None, "inside a character");
        assert_eq!(Mark::find("a #chorus/1/2/3/4 #x"), None, "not at the end");
        let mut tagged = String::from("#tag é #chorus");
        mark.append_to(&mut tagged);
        assert_eq!(Mark::find(&tagged), Some(mark), "earlier #s are text");
    }
}
