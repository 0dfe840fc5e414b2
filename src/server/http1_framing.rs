//! Where each HTTP/1 request's head begins and ends on a connection, followed byte by byte as
//! the connection is read, so that a head whose lines end in a bare LF is refused: hyper (as
//! RFC 9112 § 2.2 allows) reads a lone `\n` as a line end, and a proxy in front of the gateway
//! that does not would see other headers than the gateway does. A line must end in CRLF.
//!
//! Bodies are skipped by their framing (`Content-Length`, or `chunked` with its size lines,
//! which must end in CRLF too), so the next request's head is found where hyper finds it. A
//! head this does not understand (an unparsable length) is left to hyper, which refuses it and
//! closes the connection; tracking stops there.

/// The longest line followed: longer ones are refused (hyper's own limit on a head is lower).
const MAX_LINE: usize = 64 * 1024;

/// Why a connection's bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A head or chunk line ended in a lone LF.
    BareLf,
    /// A head or chunk line longer than [`MAX_LINE`].
    LineTooLong,
    /// A chunk's data not followed by CRLF.
    ChunkEnd,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::BareLf => "an HTTP/1 line ended in a bare LF (lines must end in CRLF)",
            Refused::LineTooLong => "an HTTP/1 head or chunk line is too long",
            Refused::ChunkEnd => "an HTTP/1 chunk's data was not followed by CRLF",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Reading a head's lines; `started` once its request line was seen.
    Head { started: bool },
    /// Skipping this many body bytes.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping this many chunk-data bytes.
    ChunkData(u64),
    /// Expecting the CRLF after a chunk's data.
    ChunkDataEnd,
    /// Reading trailer lines until the empty one.
    Trailers,
    /// No longer followed (hyper refuses what comes).
    Untracked,
}

/// The framing of one HTTP/1 connection's request bytes.
#[derive(Debug)]
pub struct Http1Framing {
    state: Position,
    /// The current line, without its line end.
    line: Vec<u8>,
    /// A CR was the last byte of the current line so far.
    cr: bool,
    /// From the current head: its body's framing.
    content_length: Option<u64>,
    chunked: bool,
}

impl Default for Http1Framing {
    fn default() -> Self {
        Http1Framing {
            state: Position::Head { started: false },
            line: Vec::new(),
            cr: false,
            content_length: None,
            chunked: false,
        }
    }
}

impl Http1Framing {
    /// Follows the next bytes the client sent.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Refused> {
        while !bytes.is_empty() {
            match self.state {
                Position::Untracked => return Ok(()),
                Position::Body(n) | Position::ChunkData(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[take..];
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (Position::Body(_), 0) => Position::Head { started: false },
                        (Position::Body(_), left) => Position::Body(left),
                        (_, 0) => Position::ChunkDataEnd,
                        (_, left) => Position::ChunkData(left),
                    };
                }
                _ => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    self.byte_of_line(b)?;
                }
            }
        }
        Ok(())
    }

    fn byte_of_line(&mut self, b: u8) -> Result<(), Refused> {
        if b == b'\n' {
            if !self.cr {
                return Err(Refused::BareLf);
            }
            self.cr = false;
            let line = std::mem::take(&mut self.line);
            return self.end_of_line(&line);
        }
        if self.cr {
            // A CR inside a line: part of it (hyper refuses such a head).
            self.line.push(b'\r');
        }
        self.cr = b == b'\r';
        if !self.cr {
            self.line.push(b);
        }
        if self.line.len() > MAX_LINE {
            return Err(Refused::LineTooLong);
        }
        Ok(())
    }

    fn end_of_line(&mut self, line: &[u8]) -> Result<(), Refused> {
        match self.state {
            Position::Head { started: false } => {
                // Empty lines before a request line are ignored (RFC 9112 § 2.2).
                if !line.is_empty() {
                    self.state = Position::Head { started: true };
                    self.content_length = None;
                    self.chunked = false;
                }
            }
            Position::Head { started: true } if line.is_empty() => {
                self.state = if self.chunked {
                    Position::ChunkSize
                } else {
                    match self.content_length {
                        Some(n) if n > 0 => Position::Body(n),
                        _ => Position::Head { started: false },
                    }
                };
            }
            Position::Head { started: true } => self.header(line),
            Position::ChunkSize => {
                let size = line.split(|b| *b == b';').next().unwrap_or_default();
                let size = std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.trim(), 16).ok());
                self.state = match size {
                    Some(0) => Position::Trailers,
                    Some(n) => Position::ChunkData(n),
                    None => Position::Untracked,
                };
            }
            Position::ChunkDataEnd if line.is_empty() => self.state = Position::ChunkSize,
            Position::ChunkDataEnd => return Err(Refused::ChunkEnd),
            Position::Trailers if line.is_empty() => self.state = Position::Head { started: false },
            Position::Trailers => {}
            Position::Body(_) | Position::ChunkData(_) | Position::Untracked => {}
        }
        Ok(())
    }

    /// A header line of the current head: only the framing headers matter here.
    fn header(&mut self, line: &[u8]) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = String::from_utf8_lossy(value);
        let value = value.trim();
        if name.eq_ignore_ascii_case(b"content-length") {
            match value.parse::<u64>() {
                Ok(n) if self.content_length.is_none_or(|m| m == n) => {
                    self.content_length = Some(n)
                }
                _ => self.state = Position::Untracked,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            if !self.chunked {
                self.state = Position::Untracked;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(parts: &[&[u8]]) -> Result<(), Refused> {
        let mut f = Http1Framing::default();
        for p in parts {
            f.feed(p)?;
        }
        Ok(())
    }

    #[test]
    fn crlf_heads_bodies_and_chunks_pass_in_any_split() {
        let text: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab\ncd\
GET /ui/ HTTP/1.1\r\nHost: x\r\n\r\n\
POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\na\nb\r\n0\r\nx-t: 1\r\n\r\n\
GET / HTTP/1.1\r\n\r\n";
        assert_eq!(feed_all(&[text]), Ok(()));
        // Byte by byte: the same.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(feed_all(&bytes), Ok(()));
    }

    #[test]
    fn a_bare_lf_in_a_head_is_refused_even_after_other_requests() {
        assert_eq!(
            feed_all(&[b"GET / HTTP/1.1\nHost: x\r\n\r\n"]),
            Err(Refused::BareLf)
        );
        assert_eq!(
            feed_all(&[b"GET / HTTP/1.1\r\nHost: x\nX-Other: 1\r\n\r\n"]),
            Err(Refused::BareLf)
        );
        // The LF inside the first body is data; the second request's head is refused.
        assert_eq!(
            feed_all(&[
                b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n\n\n",
                b"GET / HTTP/1.1\r\nHost: x\n\n"
            ]),
            Err(Refused::BareLf)
        );
        assert_eq!(
            feed_all(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nA\r\n0\r\n\r\n"]),
            Err(Refused::BareLf)
        );
        assert_eq!(
            feed_all(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nAB\r\n"]),
            Err(Refused::ChunkEnd)
        );
    }

    #[test]
    fn an_unparsable_length_is_left_to_hyper() {
        assert_eq!(
            feed_all(&[b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n\nanything\n"]),
            Ok(())
        );
    }
}
