//! Tailing `events.jsonl`: read from a byte offset, whole lines only. A line without its
//! newline is left for the next poll (the writer is still writing it); a whole line that is
//! not an event is skipped and reported; a file shorter than the offset was replaced (a run
//! started again in the same folder), so reading starts over.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use s5_run::Event;

/// Bytes read per poll at most, so one poll of a huge file stays short.
const MAX_READ_BYTES: u64 = 32 << 20;

/// Where the tail has got to.
#[derive(Debug, Clone, Default)]
pub struct EventTail {
    /// Bytes consumed (whole lines).
    pub offset: u64,
    /// Lines consumed.
    pub lines: u64,
}

/// A whole line that is not an event.
#[derive(Debug, Clone, PartialEq)]
pub struct CorruptLine {
    /// 1-based line number.
    pub line: u64,
    pub reason: String,
}

/// What one poll found.
#[derive(Debug, Default)]
pub struct TailRead {
    /// The file was replaced or truncated: everything read before is void.
    pub reset: bool,
    pub events: Vec<Event>,
    pub corrupt: Vec<CorruptLine>,
    /// Bytes left for later polls (more than one poll reads at most).
    pub behind_bytes: u64,
}

impl EventTail {
    /// Reads the whole lines appended since the last poll. A missing file reads as nothing
    /// new.
    pub fn poll(&mut self, path: &Path) -> std::io::Result<TailRead> {
        let mut read = TailRead::default();
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            // Not there (yet, or deleted with its run): nothing new; what was read stays.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(read),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            *self = Self::default();
            read.reset = true;
        }
        if len == self.offset {
            return Ok(read);
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let want = (len - self.offset).min(MAX_READ_BYTES);
        // Bytes this poll leaves unread for its size limit (a line still being written is
        // not counted: it is not there yet).
        read.behind_bytes = len - self.offset - want;
        let mut bytes = Vec::with_capacity(want as usize);
        file.take(want).read_to_end(&mut bytes)?;
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
            return Ok(read);
        };
        for line in bytes[..end].split(|&b| b == b'\n') {
            self.lines += 1;
            let text = String::from_utf8_lossy(line);
            if text.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Event>(&text) {
                Ok(event) => read.events.push(event),
                Err(e) => read.corrupt.push(CorruptLine {
                    line: self.lines,
                    reason: e.to_string(),
                }),
            }
        }
        self.offset += end as u64 + 1;
        Ok(read)
    }
}
