//! A stdio backend's stderr: logged line by line, in bounded memory.

use tokio::io::AsyncReadExt;
use tokio::process::ChildStderr;

/// A stderr line is logged up to this many bytes; the rest of it is counted
/// and dropped, so a child that writes without newlines costs no memory.
pub const STDERR_LINE_CAP: usize = 8 * 1024;

/// Logs the child's stderr line by line at `info`, until EOF. Lines are
/// capped at [`STDERR_LINE_CAP`] bytes and decoded lossily, and reading
/// never stops early: a child whose stderr is not drained blocks, and one
/// whose stderr is closed dies of SIGPIPE.
pub(super) async fn drain(name: String, mut stderr: ChildStderr) {
    let mut chunk = vec![0u8; 8 * 1024];
    let mut lines = LineCap::default();
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => lines.feed(&chunk[..n], |line| log_stderr(&name, line)),
            // Reading a pipe fails only if it is gone; nothing more will come.
            Err(e) => {
                tracing::debug!(backend = %name, error = %e, "stopped reading stderr");
                break;
            }
        }
    }
    lines.finish(|line| log_stderr(&name, line));
}

fn log_stderr(name: &str, line: StderrLine<'_>) {
    let text = String::from_utf8_lossy(line.bytes);
    let text = text.trim_end_matches('\r');
    match line.kind {
        LineKind::Whole => {
            tracing::info!(target: "manifold::backend::stderr", backend = %name, "{text}")
        }
        LineKind::Truncated => {
            tracing::info!(target: "manifold::backend::stderr", backend = %name, "{text} [line longer than {STDERR_LINE_CAP} bytes; the rest is dropped]")
        }
        LineKind::DroppedTail(n) => {
            tracing::info!(target: "manifold::backend::stderr", backend = %name, "[{n} more bytes of that line dropped]")
        }
    }
}

/// One piece of stderr output to log.
struct StderrLine<'a> {
    bytes: &'a [u8],
    kind: LineKind,
}

#[derive(Debug, PartialEq, Eq)]
enum LineKind {
    /// A line (without its newline), at most the cap long.
    Whole,
    /// The first cap bytes of a longer line, logged as soon as the cap is hit.
    Truncated,
    /// The end of a long line: how many bytes were dropped.
    DroppedTail(u64),
}

/// Splits a byte stream into lines of at most [`STDERR_LINE_CAP`] bytes.
#[derive(Default)]
struct LineCap {
    line: Vec<u8>,
    /// `Some(n)` while dropping the rest of a line that hit the cap.
    dropping: Option<u64>,
}

impl LineCap {
    fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(StderrLine<'_>)) {
        while !bytes.is_empty() {
            let newline = memchr::memchr(b'\n', bytes);
            let (part, rest) = match newline {
                Some(i) => (&bytes[..i], &bytes[i + 1..]),
                None => (bytes, &[][..]),
            };
            bytes = rest;
            if let Some(dropped) = &mut self.dropping {
                *dropped += part.len() as u64;
            } else {
                let room = STDERR_LINE_CAP - self.line.len();
                if part.len() <= room {
                    self.line.extend_from_slice(part);
                } else {
                    self.line.extend_from_slice(&part[..room]);
                    emit(StderrLine {
                        bytes: &self.line,
                        kind: LineKind::Truncated,
                    });
                    self.line.clear();
                    self.dropping = Some((part.len() - room) as u64);
                }
            }
            if newline.is_some() {
                self.end_line(&mut emit);
            }
        }
    }

    fn end_line(&mut self, emit: &mut impl FnMut(StderrLine<'_>)) {
        match self.dropping.take() {
            Some(n) => emit(StderrLine {
                bytes: &[],
                kind: LineKind::DroppedTail(n),
            }),
            None => {
                emit(StderrLine {
                    bytes: &self.line,
                    kind: LineKind::Whole,
                });
                self.line.clear();
            }
        }
    }

    /// At EOF: what is left of an unterminated last line.
    fn finish(mut self, mut emit: impl FnMut(StderrLine<'_>)) {
        if !self.line.is_empty() || self.dropping.is_some() {
            self.end_line(&mut emit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[&[u8]]) -> Vec<(usize, LineKind)> {
        let mut out = Vec::new();
        let mut cap = LineCap::default();
        for chunk in input {
            cap.feed(chunk, |l| out.push((l.bytes.len(), l.kind)));
        }
        cap.finish(|l| out.push((l.bytes.len(), l.kind)));
        out
    }

    #[test]
    fn stderr_lines_are_capped_and_split_across_chunks() {
        assert_eq!(
            split(&[b"ab", b"c\nde\n", b"f"]),
            vec![
                (3, LineKind::Whole),
                (2, LineKind::Whole),
                (1, LineKind::Whole)
            ]
        );
        let long = vec![b'x'; STDERR_LINE_CAP + 10];
        assert_eq!(
            split(&[&long, &long, b"\nok\n"]),
            vec![
                (STDERR_LINE_CAP, LineKind::Truncated),
                (0, LineKind::DroppedTail(10 + STDERR_LINE_CAP as u64 + 10)),
                (2, LineKind::Whole)
            ]
        );
    }
}
