//! A guard in front of the multipart parser: bytes that carry no field data (the preamble before
//! the first boundary, each part's headers, the epilogue) are capped at [`MAX_OVERHEAD_BYTES`]
//! in all. The parser buffers such bytes until it finds the boundary or the end of the
//! headers, so without the cap an unauthenticated client could make it hold up to the whole
//! body limit (DEC-17).
//!
//! The guard follows the body's framing with the same delimiters as the parser
//! (`--<boundary>`, then `\r\n\r\n` ending the headers, then `\r\n--<boundary>` ending the
//! data) and counts the bytes outside field data; it never copies the data itself.

use bytes::Bytes;
use memchr::memmem;

/// Most bytes of a form that are not field data: preamble, part headers and epilogue.
pub const MAX_OVERHEAD_BYTES: u64 = 64 * 1024;

/// The stream error raised when a form goes over [`MAX_OVERHEAD_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error("the multipart preamble and part headers exceed {limit} bytes")]
pub struct OverheadTooLarge {
    /// The cap.
    pub limit: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before the first boundary.
    Preamble,
    /// After a boundary, until the blank line ending the part's headers (or the epilogue).
    Headers,
    /// A part's data, until the next boundary.
    Data,
}

/// Follows a multipart body chunk by chunk; see the [module documentation](self).
#[derive(Debug)]
pub struct Framing {
    first: Vec<u8>,
    delimiter: Vec<u8>,
    stage: Stage,
    /// The last bytes of the previous chunk (shorter than the pattern searched for), so a
    /// delimiter split across chunks is found.
    tail: Vec<u8>,
    overhead: u64,
    limit: u64,
    failed: bool,
}

impl Framing {
    /// A guard for a body with `boundary`, capped at `limit` overhead bytes.
    pub fn new(boundary: &str, limit: u64) -> Self {
        Self {
            first: format!("--{boundary}").into_bytes(),
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            stage: Stage::Preamble,
            tail: Vec::new(),
            overhead: 0,
            limit,
            failed: false,
        }
    }

    /// Account for the next chunk; an error once the overhead goes over the cap (and for
    /// every chunk after that).
    pub fn feed(&mut self, chunk: &Bytes) -> Result<(), OverheadTooLarge> {
        let limit = self.limit;
        let over = || OverheadTooLarge { limit };
        if self.failed {
            return Err(over());
        }
        let mut rest: &[u8] = chunk;
        while !rest.is_empty() {
            let pattern: &[u8] = match self.stage {
                Stage::Preamble => &self.first,
                Stage::Headers => b"\r\n\r\n",
                Stage::Data => &self.delimiter,
            };
            let (consumed, found) = match find_across(&self.tail, rest, pattern) {
                Some(end) => (end, true),
                None => (rest.len(), false),
            };
            if self.stage != Stage::Data {
                self.overhead = self.overhead.saturating_add(consumed as u64);
            }
            if found {
                self.tail.clear();
                self.stage = match self.stage {
                    Stage::Headers => Stage::Data,
                    Stage::Preamble | Stage::Data => Stage::Headers,
                };
            } else {
                let keep = pattern.len().saturating_sub(1);
                self.tail.extend_from_slice(rest);
                let cut = self.tail.len().saturating_sub(keep);
                self.tail.drain(..cut);
            }
            rest = &rest[consumed..];
            if self.overhead > self.limit {
                self.failed = true;
                return Err(over());
            }
        }
        Ok(())
    }
}

/// Where the first `pattern` that ends in `chunk` ends (an offset into `chunk`), given the
/// `tail` of earlier bytes (shorter than `pattern`).
fn find_across(tail: &[u8], chunk: &[u8], pattern: &[u8]) -> Option<usize> {
    if !tail.is_empty() {
        let head = &chunk[..chunk.len().min(pattern.len() - 1)];
        let mut seam = Vec::with_capacity(tail.len() + head.len());
        seam.extend_from_slice(tail);
        seam.extend_from_slice(head);
        if let Some(at) = memmem::find(&seam, pattern) {
            return Some(at + pattern.len() - tail.len());
        }
    }
    memmem::find(chunk, pattern).map(|at| at + pattern.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(preamble: &str, headers: &str, data: &str) -> Vec<u8> {
        format!("{preamble}--b\r\n{headers}\r\n\r\n{data}\r\n--b--\r\n").into_bytes()
    }

    fn feed_in(framing: &mut Framing, body: &[u8], step: usize) -> Result<(), OverheadTooLarge> {
        for piece in body.chunks(step) {
            framing.feed(&Bytes::copy_from_slice(piece))?;
        }
        Ok(())
    }

    #[test]
    fn field_data_does_not_count() {
        let data = "x".repeat(10_000);
        let body = form("", "Content-Disposition: form-data; name=\"a\"", &data);
        for step in [1, 3, 7, 64, body.len()] {
            let mut f = Framing::new("b", 100);
            assert!(feed_in(&mut f, &body, step).is_ok(), "step {step}");
            assert!(f.overhead < 100, "step {step}: {}", f.overhead);
        }
    }

    #[test]
    fn a_long_preamble_or_header_goes_over() {
        for body in [
            form(&"p".repeat(200), "h", "d"),
            form("", &"h".repeat(200), "d"),
        ] {
            for step in [1, 5, body.len()] {
                let mut f = Framing::new("b", 100);
                assert!(feed_in(&mut f, &body, step).is_err(), "step {step}");
                assert!(f.feed(&Bytes::from_static(b"more")).is_err(), "sticky");
            }
        }
    }

    #[test]
    fn headers_of_every_part_add_up() {
        let part = "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nd\r\n";
        let mut f = Framing::new("b", 200);
        let few = part.repeat(3);
        assert!(feed_in(&mut f, few.as_bytes(), 10).is_ok());
        let many = part.repeat(10);
        let mut f = Framing::new("b", 200);
        assert!(feed_in(&mut f, many.as_bytes(), 10).is_err());
    }
}
