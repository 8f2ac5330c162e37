//! The socket of one HTTP connection, with the deadlines hyper does not
//! keep by itself, and JSON for the few answers hyper writes on its own.
//!
//! A connection is always in one of four phases. The server waits for a
//! request's head (`AwaitingHead` on a new connection, `Idle` between
//! requests on a kept-alive one), reads it (`ReadingHead`), then serves it
//! (`Busy`) until the answer is flushed. The wait and the head each have a
//! deadline: a client that connects and sends nothing, or trickles a head
//! a byte at a time, or keeps an idle connection open, is cut off. A
//! request's body is bounded elsewhere, by the body extractor's own
//! deadline, because only the handler knows whether it reads one.
//!
//! hyper answers a request it cannot parse (a URI over 64 KiB, a head over
//! its buffer, a malformed request line) itself, with an empty body. Such
//! an answer is recognised here by its `content-length: 0` on an error
//! status, which no keyledger handler sends, and rewritten into the JSON
//! error every other answer uses.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From the connection's start, or from a request's first byte, until
    /// its head is complete.
    pub header_read: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub keep_alive: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingHead,
    ReadingHead,
    Busy,
    Idle,
}

/// The connection's current deadline, shared with the task that serves
/// it. hyper does not always poll an idle connection's socket, so the
/// deadline can't rely on being noticed inside a read: the serving task
/// watches it too, and drops the connection when it passes.
#[derive(Default)]
pub struct Watch {
    /// None while a request is being served.
    deadline: std::sync::Mutex<Option<Instant>>,
    pub changed: tokio::sync::Notify,
}

impl Watch {
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = deadline;
        self.changed.notify_one();
    }
}

pub struct GuardedIo<T> {
    inner: T,
    watch: std::sync::Arc<Watch>,
    deadlines: Deadlines,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
    /// The last bytes of the head read so far, to find its end across reads.
    window: [u8; 4],
    /// Whether any of the answer was written since the head was complete.
    answered: bool,
    /// Whether the clock runs on writing this answer: a client that stops
    /// reading its answer must not hold the connection forever.
    write_clock: bool,
    /// A JSON answer replacing one of hyper's own: its bytes and how many
    /// have been written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<T> GuardedIo<T> {
    pub fn new(inner: T, deadlines: Deadlines) -> Self {
        let watch = std::sync::Arc::new(Watch::default());
        watch.set(Some(Instant::now() + deadlines.header_read));
        Self {
            inner,
            watch,
            deadlines,
            phase: Phase::AwaitingHead,
            deadline: Box::pin(tokio::time::sleep(deadlines.header_read)),
            window: [0; 4],
            answered: false,
            write_clock: false,
            replacement: None,
        }
    }

    /// The deadline the serving task watches.
    pub fn watch(&self) -> std::sync::Arc<Watch> {
        self.watch.clone()
    }

    fn rearm(&mut self, after: Duration) {
        let at = Instant::now() + after;
        self.deadline.as_mut().reset(at);
        self.watch.set(Some(at));
    }

    /// Follows the phases through bytes the client sent.
    fn on_read(&mut self, bytes: &[u8]) {
        match self.phase {
            Phase::AwaitingHead => self.phase = Phase::ReadingHead,
            Phase::Idle => {
                self.phase = Phase::ReadingHead;
                self.answered = false;
                self.rearm(self.deadlines.header_read);
            }
            Phase::ReadingHead | Phase::Busy => {}
        }
        if self.phase != Phase::ReadingHead {
            return;
        }
        for &byte in bytes {
            self.window = [self.window[1], self.window[2], self.window[3], byte];
            // httparse accepts bare LF line ends as well as CRLF.
            if &self.window == b"\r\n\r\n" || self.window[2..] == *b"\n\n" {
                self.phase = Phase::Busy;
                self.window = [0; 4];
                self.answered = false;
                self.write_clock = false;
                self.watch.set(None);
                return;
            }
        }
    }

    fn timed_out(&self) -> io::Error {
        let what = match self.phase {
            Phase::Idle => "idle keep-alive connection timed out",
            _ => "request head not received in time",
        };
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let this = &mut *self;
                this.on_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.phase != Phase::Busy && self.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(self.timed_out()))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> GuardedIo<T> {
    /// Writes what is left of a replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Only the first bytes of an answer can be one of hyper's own.
        if this.replacement.is_none() && !this.answered {
            if let Some(json) = json_for_automatic_answer(buf) {
                this.replacement = Some((json, 0));
            }
        }
        if this.replacement.is_some() {
            // hyper closes the connection after its own answers, so the
            // replacement is the last thing written.
            return this.poll_replacement(cx).map_ok(|()| buf.len());
        }
        if !this.write_clock {
            this.write_clock = true;
            this.rearm(this.deadlines.keep_alive);
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            if n > 0 {
                // An interim `100 Continue` is not the answer: the body of
                // the request is still to come.
                if !buf.starts_with(b"HTTP/1.1 1") {
                    this.answered = true;
                }
                // Progress: the reader is slow at worst, not gone.
                this.rearm(this.deadlines.keep_alive);
            }
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.replacement.is_some() {
            std::task::ready!(this.poll_replacement(cx))?;
        }
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) && this.phase == Phase::Busy && this.answered {
            this.phase = Phase::Idle;
            this.write_clock = false;
            this.rearm(this.deadlines.keep_alive);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.replacement.is_some() {
            std::task::ready!(this.poll_replacement(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// If `buf` is an error answer hyper made by itself (a 4xx or 5xx head
/// with `content-length: 0`), the same answer with a JSON error body.
fn json_for_automatic_answer(buf: &[u8]) -> Option<Vec<u8>> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let rest = status_line.strip_prefix("HTTP/1.1 ").or_else(|| status_line.strip_prefix("HTTP/1.0 "))?;
    let code: u16 = rest.get(..3)?.parse().ok()?;
    if !(400..600).contains(&code) || !lines.any(|line| line.eq_ignore_ascii_case("content-length: 0")) {
        return None;
    }
    let (error_code, message) = match code {
        414 => ("uri_too_long", "The request URI is too long"),
        431 => ("headers_too_large", "The request's headers are too large"),
        505 => ("http_version_not_supported", "This HTTP version is not supported"),
        _ => ("malformed_request", "The request is not valid HTTP"),
    };
    let body = serde_json::json!({ "success": false, "error": message, "code": error_code }).to_string();
    let reason = rest.get(4..).unwrap_or_default();
    Some(
        format!(
            "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const DEADLINES: Deadlines =
        Deadlines { header_read: Duration::from_millis(200), keep_alive: Duration::from_millis(600) };

    #[test]
    fn hypers_own_error_answers_become_json() {
        let answer = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let json = String::from_utf8(json_for_automatic_answer(answer).unwrap()).unwrap();
        assert!(json.starts_with("HTTP/1.1 414 URI Too Long\r\ncontent-type: application/json\r\n"), "{json}");
        let body: serde_json::Value = serde_json::from_str(json.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["code"], "uri_too_long");
    }

    #[test]
    fn answers_with_a_body_or_a_success_status_are_left_alone() {
        assert!(json_for_automatic_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 52\r\n\r\n{}").is_none());
        assert!(json_for_automatic_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(json_for_automatic_answer(b"HTTP/1.1 204 No Content\r\n\r\n").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_is_cut_off_after_the_header_deadline() {
        let (server, _client) = tokio::io::duplex(64);
        let mut io = GuardedIo::new(server, DEADLINES);
        let started = Instant::now();
        let error = io.read(&mut [0; 16]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), DEADLINES.header_read);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_is_cut_off_even_while_bytes_keep_coming() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut io = GuardedIo::new(server, DEADLINES);
        let trickle = tokio::spawn(async move {
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\n".iter() {
                if client.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let mut buf = [0; 64];
        let error = loop {
            match io.read(&mut buf).await {
                Ok(_) => continue,
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_head_stops_the_clock_and_an_answer_starts_the_keep_alive_one() {
        let (server, mut client) = tokio::io::duplex(256);
        let mut io = GuardedIo::new(server, DEADLINES);
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0; 64];
        let head = io.read(&mut buf).await.unwrap();
        assert!(head > 0);
        assert_eq!(io.phase, Phase::Busy);
        // Serving takes longer than the header deadline: no timeout while busy.
        let pending = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf)).await;
        assert!(pending.is_err(), "a busy connection has no read deadline");
        io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.phase, Phase::Idle);
        let started = Instant::now();
        let error = io.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), DEADLINES.keep_alive);
    }

    #[tokio::test(start_paused = true)]
    async fn writing_an_answer_runs_the_clock_and_an_interim_100_is_not_the_answer() {
        let (server, mut client) = tokio::io::duplex(256);
        let mut io = GuardedIo::new(server, DEADLINES);
        client.write_all(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\ncontent-length: 2\r\n\r\n").await.unwrap();
        let head = io.read(&mut [0; 128]).await.unwrap();
        assert!(head > 0);
        assert_eq!(io.watch().deadline(), None, "no deadline while the request is served");
        io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.phase, Phase::Busy, "still serving: the body is to come");
        // Writing the answer sets a deadline the serving task enforces, so a
        // client that stops reading can't hold the connection forever.
        let deadline = io.watch().deadline().expect("a deadline on writing");
        assert_eq!(deadline, Instant::now() + DEADLINES.keep_alive);
    }
}
