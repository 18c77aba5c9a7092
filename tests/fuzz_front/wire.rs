//! A raw HTTP/1.1 client over a `TcpStream`: it sends bytes exactly as the
//! fuzzer made them (hyper's client would refuse or repair most of them) and
//! checks that what comes back is a well-formed HTTP response.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` on a fresh connection and reads the response. `Err` says
/// what was wrong with it (no answer before `deadline`, or malformed).
/// `open_stream` marks a request that may legitimately be answered with an
/// endless SSE stream (a GET): then the head and 300 ms of body suffice.
pub fn exchange(
    addr: &str,
    request: &[u8],
    open_stream: bool,
    deadline: Duration,
) -> Result<Reply, String> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    // The server may answer (413, 431, 400) and close before reading all we
    // send; the answer is what is checked, not whether our write finished.
    let _ = s.write_all(request);
    let _ = s.flush();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut head_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let left = deadline.saturating_sub(now - start);
        if left.is_zero() {
            break;
        }
        if let Some(t) = head_at
            && open_stream
            && now - t > Duration::from_millis(300)
        {
            return parse(&buf, true);
        }
        let _ = s.set_read_timeout(Some(left.min(Duration::from_millis(250))));
        match s.read(&mut chunk) {
            Ok(0) => return parse(&buf, false),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset after a complete response is the server closing early.
            Err(e) => {
                return parse(&buf, false)
                    .map_err(|p| format!("{e} after {} bytes: {p}", buf.len()));
            }
        }
        if head_at.is_none() && find(&buf, b"\r\n\r\n").is_some() {
            head_at = Some(Instant::now());
        }
    }
    Err(format!(
        "no complete response within {deadline:?}; got {} bytes: {:?}",
        buf.len(),
        String::from_utf8_lossy(&buf[..buf.len().min(300)])
    ))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one response; `partial` allows a body cut short (an open stream).
fn parse(buf: &[u8], partial: bool) -> Result<Reply, String> {
    let mut rest = buf;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        let head_len = match r.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return Err(format!(
                    "incomplete response head: {:?}",
                    String::from_utf8_lossy(&rest[..rest.len().min(300)])
                ));
            }
            Err(e) => return Err(format!("malformed response head: {e}")),
        };
        let status = r.code.ok_or("no status code")?;
        if !(100..600).contains(&status) {
            return Err(format!("status {status} out of range"));
        }
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let raw = &rest[head_len..];
        if (100..200).contains(&status) {
            rest = raw;
            continue;
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        reply.body = body(&reply, raw, partial)?;
        return Ok(reply);
    }
}

fn body(reply: &Reply, raw: &[u8], partial: bool) -> Result<Vec<u8>, String> {
    let chunked = reply
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    if chunked {
        return dechunk(raw, partial);
    }
    match reply.header("content-length") {
        Some(len) => {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| format!("bad content-length {len:?}"))?;
            // HEAD and 304 carry a length but no body.
            if raw.len() < len && !partial && !raw.is_empty() {
                return Err(format!("body cut short: {} of {len} bytes", raw.len()));
            }
            Ok(raw[..raw.len().min(len)].to_vec())
        }
        None => Ok(raw.to_vec()),
    }
}

fn dechunk(mut raw: &[u8], partial: bool) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(raw, b"\r\n") else {
            return if partial {
                Ok(out)
            } else {
                Err("chunked body without its last chunk".into())
            };
        };
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            return if partial {
                out.extend_from_slice(&raw[..raw.len().min(size)]);
                Ok(out)
            } else {
                Err("chunk cut short".into())
            };
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}
