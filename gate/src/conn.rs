//! One client connection's task: reads what the client sends (everything a
//! read brought, frame by frame), checks each frame — the `Hello` first,
//! sizes, the rate limit, the encoding — and hands the client's calls and
//! moves to the game; writes the client's link when the gate could not.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;
use wyrm_protocol::{
    ClientFrame, ErrorCode, ServerFrame, WelcomeOptions, COMPRESS_MIN, LZ4_NAME,
    OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

use crate::net::{
    ws_control_frame, CloseReason, Duty, FrameConn, Link, NetError, Piece, ReadEnd, Ticket, WS_PONG,
};
use crate::Registration;
use wyrm_dispatcher::Upstream;
use wyrm_wire::{ClientId, ToGame};

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Bytes queued to the client before it is dropped as too slow.
    pub queue_bytes: usize,
    /// Frames per second the client may send (bursts of twice that).
    pub rate: u32,
    /// Longest a frame may take to arrive once begun.
    pub frame_timeout: Duration,
    /// Longest a client may send nothing at all.
    pub idle_timeout: Duration,
}

/// What a connection needs to reach the rest of the server.
pub struct ConnContext<U> {
    /// The gate's registry.
    pub gate: flume::Sender<Registration>,
    /// Takes the client's messages to its game.
    pub upstream: U,
    /// Limits.
    pub limits: ConnLimits,
}

impl<U: Clone> Clone for ConnContext<U> {
    fn clone(&self) -> Self {
        Self {
            gate: self.gate.clone(),
            upstream: self.upstream.clone(),
            limits: self.limits,
        }
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    PeerClosed,
    Dropped(CloseReason),
    Malformed(String),
    Flooding,
    WrongVersion,
    Io(String),
    GameStopped,
    SlowFrame,
    Idle,
}

/// Serves one client connection until it ends; its log lines carry the
/// client's id and transport.
/// `ticket` is the connection's place under the connection limits, held
/// until it ends.
pub async fn serve_connection<C: FrameConn, U: Upstream>(
    conn: C,
    link: Arc<Link>,
    client: ClientId,
    ctx: ConnContext<U>,
    ticket: Ticket,
) {
    let span = tracing::info_span!("client", id = %client, transport = conn.transport());
    serve(conn, link, client, ctx).instrument(span).await;
    drop(ticket);
}

async fn serve<C: FrameConn, U: Upstream>(
    mut conn: C,
    link: Arc<Link>,
    client: ClientId,
    ctx: ConnContext<U>,
) {
    // `Welcome` answers `Hello` (its layout is the client's version's).
    let registration = Registration::Register {
        client,
        link: link.clone(),
    };
    if ctx.gate.send_async(registration).await.is_err() {
        return;
    }
    let mut session = Session {
        client,
        link: &link,
        max_frame: ctx.limits.max_frame,
        greeted: false,
        bucket: TokenBucket::new(ctx.limits.rate),
        to_game: Vec::new(),
        end: None,
    };
    let mut clock = Clock::new(ctx.limits);
    let alarm = tokio::time::sleep_until(clock.next_alarm().into());
    tokio::pin!(alarm);
    let end = loop {
        tokio::select! {
            biased;
            duty = link.next_duty() => match duty {
                Duty::Write => {
                    if let Err(e) = conn.write_queued(&link).await {
                        break End::Io(e.to_string());
                    }
                }
                Duty::Close(reason) => break End::Dropped(reason),
            },
            read = async { conn.read(&mut |p| session.take(p)).await } => {
                let read_end = match read {
                    Ok(r) => r,
                    Err(NetError::Io(e)) => break End::Io(e.to_string()),
                    Err(e @ NetError::Framing(_)) => break End::Malformed(e.to_string()),
                };
                // What the session answered itself (a Welcome, pongs,
                // refusals) leaves now: handing the rest on may wait (for
                // room in a game, or for a game to come up).
                link.flush();
                // What the read brought goes to the game before anything
                // else happens, even if the read also ended the connection.
                let mut stopped = false;
                for msg in session.to_game.drain(..) {
                    if ctx.upstream.to_game(msg).await.is_err() {
                        stopped = true;
                        break;
                    }
                }
                if stopped {
                    break End::GameStopped;
                }
                if let Some(end) = session.end.take() {
                    break end;
                }
                if read_end == ReadEnd::PeerClosed {
                    break End::PeerClosed;
                }
                if clock.heard(conn.mid_frame()) {
                    alarm.as_mut().reset(clock.next_alarm().into());
                }
            }
            () = &mut alarm => {
                match clock.alarm(Instant::now()) {
                    Alarm::Wait => {}
                    Alarm::Probe => {
                        if let Some(probe) = conn.probe() {
                            link.push_raw(probe);
                            link.flush();
                        }
                    }
                    Alarm::SlowFrame => break End::SlowFrame,
                    Alarm::Idle => break End::Idle,
                }
                alarm.as_mut().reset(clock.next_alarm().into());
            }
        }
    };
    let greeted = session.greeted;
    let _ = ctx
        .gate
        .send_async(Registration::Unregister { client })
        .await;
    if greeted {
        let _ = ctx
            .upstream
            .to_game(ToGame::ClientDisconnected { client })
            .await;
    }
    match &end {
        End::PeerClosed => tracing::debug!("disconnected"),
        End::Dropped(r @ CloseReason::SlowReader { .. }) => tracing::warn!("dropped: {r}"),
        End::Dropped(r) => tracing::debug!("dropped by the server: {r}"),
        End::Malformed(why) => tracing::warn!("malformed input, closing: {why}"),
        End::Flooding => tracing::warn!("kept flooding past its rate limit, closing"),
        End::WrongVersion => {
            tracing::info!("refused: the client does not speak protocol {PROTOCOL_VERSION}")
        }
        End::Io(why) => tracing::debug!("connection failed: {why}"),
        End::GameStopped => tracing::debug!("the game stopped"),
        End::SlowFrame | End::Idle => {
            tracing::info!("{}, closing", timed_out(&end, &ctx.limits))
        }
    }
    match end {
        End::Malformed(why) => push_error(&link, ErrorCode::Malformed, why),
        End::Flooding => push_error(
            &link,
            ErrorCode::Overloaded,
            "flooding; disconnected".into(),
        ),
        End::SlowFrame => push_error(
            &link,
            ErrorCode::TimedOut,
            format!("{}; disconnected", timed_out(&end, &ctx.limits)),
        ),
        End::Idle => push_error(
            &link,
            ErrorCode::TimedOut,
            format!(
                "{}; disconnected (send a Ping when idle)",
                timed_out(&end, &ctx.limits)
            ),
        ),
        _ => {}
    }
    conn.close(&link).await;
}

/// Which of the connection's timeouts passed, said once for the log and
/// the client alike.
fn timed_out(end: &End, limits: &ConnLimits) -> String {
    match end {
        End::SlowFrame => format!(
            "a frame took longer than {} ms to arrive",
            limits.frame_timeout.as_millis()
        ),
        _ => format!("sent nothing for {} ms", limits.idle_timeout.as_millis()),
    }
}

/// What the connection's timer finds when it goes off.
#[derive(Debug, PartialEq, Eq)]
enum Alarm {
    /// Nothing is due yet (the client was heard since the alarm was set).
    Wait,
    /// The client has been quiet half its idle time: draw an answer.
    Probe,
    /// A frame begun has not ended in time.
    SlowFrame,
    /// The client has been quiet its whole idle time.
    Idle,
}

/// The deadlines of one connection. Reads only note the time; the one
/// timer is moved when a frame begins and otherwise checks, when it goes
/// off, whether what it was set for still holds, so a busy connection
/// does not touch the timer on every read.
struct Clock {
    limits: ConnLimits,
    last_heard: Instant,
    frame_began: Option<Instant>,
    probed: bool,
}

impl Clock {
    fn new(limits: ConnLimits) -> Self {
        Self {
            limits,
            last_heard: Instant::now(),
            frame_began: None,
            probed: false,
        }
    }

    /// Notes a read; says whether the alarm must move sooner (a frame
    /// began).
    fn heard(&mut self, mid_frame: bool) -> bool {
        let now = Instant::now();
        self.last_heard = now;
        self.probed = false;
        match (mid_frame, self.frame_began) {
            (true, None) => {
                self.frame_began = Some(now);
                true
            }
            (false, _) => {
                self.frame_began = None;
                false
            }
            (true, Some(_)) => false,
        }
    }

    fn next_alarm(&self) -> Instant {
        let quiet = if self.probed {
            self.last_heard + self.limits.idle_timeout
        } else {
            self.last_heard + self.limits.idle_timeout / 2
        };
        match self.frame_began {
            Some(began) => quiet.min(began + self.limits.frame_timeout),
            None => quiet,
        }
    }

    fn alarm(&mut self, now: Instant) -> Alarm {
        if self
            .frame_began
            .is_some_and(|began| now >= began + self.limits.frame_timeout)
        {
            return Alarm::SlowFrame;
        }
        if now >= self.last_heard + self.limits.idle_timeout {
            return Alarm::Idle;
        }
        if !self.probed && now >= self.last_heard + self.limits.idle_timeout / 2 {
            self.probed = true;
            return Alarm::Probe;
        }
        Alarm::Wait
    }
}

/// Queues an error about no request (`req_id` 0).
fn push_error(link: &Link, code: ErrorCode, message: String) {
    let frame = ServerFrame::Error {
        req_id: 0,
        code,
        message,
    };
    // A client too slow to take an error frame is being dropped anyway.
    let _ = link.push_slice(&frame.to_bytes());
}

/// What a connection's task keeps while reading.
struct Session<'a> {
    client: ClientId,
    link: &'a Link,
    max_frame: usize,
    /// The client's `Hello` arrived.
    greeted: bool,
    bucket: TokenBucket,
    /// Messages for the game from the current read.
    to_game: Vec<ToGame>,
    end: Option<End>,
}

impl Session<'_> {
    /// Takes one piece of input; `Break` ends the connection (`end` says
    /// why).
    fn take(&mut self, piece: Piece<'_>) -> ControlFlow<()> {
        let frame = match piece {
            Piece::Frame(f) => f,
            Piece::TooLarge { len } => {
                tracing::warn!(len, max = self.max_frame, "oversized frame refused");
                let msg = format!(
                    "frame of {len} bytes exceeds the maximum of {}",
                    self.max_frame
                );
                return self.reply_error(ErrorCode::FrameTooLarge, msg);
            }
            Piece::Ping(payload) => {
                self.link.push_raw(&ws_control_frame(WS_PONG, payload));
                return ControlFlow::Continue(());
            }
            Piece::Close => return self.stop(End::PeerClosed),
        };
        match self.bucket.take() {
            Admit::Yes => {}
            Admit::Refuse => {
                let msg = "sending too fast; frame dropped".into();
                return self.reply_error(ErrorCode::Overloaded, msg);
            }
            Admit::Disconnect => return self.stop(End::Flooding),
        }
        let frame = match ClientFrame::decode(frame) {
            Ok(f) => f,
            Err(e) => return self.stop(End::Malformed(e.to_string())),
        };
        if !self.greeted {
            return self.greet(frame);
        }
        let client = self.client;
        match frame {
            ClientFrame::Ping { nonce } => {
                if self
                    .link
                    .push_slice(&ServerFrame::Pong { nonce }.to_bytes())
                    .is_err()
                {
                    return self.stop(End::Io("outbound queue full".into()));
                }
            }
            ClientFrame::Call {
                req_id,
                entity,
                method,
                args,
            } => {
                tracing::trace!(req_id, entity, %method, "call");
                self.to_game.push(ToGame::ClientCall {
                    client,
                    req_id,
                    entity,
                    method,
                    args,
                });
            }
            ClientFrame::Move { pos, yaw } => {
                self.to_game.push(ToGame::ClientMove { client, pos, yaw });
            }
            ClientFrame::Hello { .. } => {
                return self.stop(End::Malformed("a second Hello".into()));
            }
        }
        ControlFlow::Continue(())
    }

    /// The first frame: it must be `Hello` with this server's version.
    fn greet(&mut self, frame: ClientFrame) -> ControlFlow<()> {
        let message = match frame {
            ClientFrame::Hello { version, options }
                if (OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) =>
            {
                // LZ4 for a client of protocol 4 that reads it.
                let lz4 = version >= 4 && options.compress.iter().any(|c| c == LZ4_NAME);
                let welcome = ServerFrame::Welcome {
                    version,
                    max_frame: self.max_frame as u32,
                    options: WelcomeOptions {
                        compress: lz4.then(|| LZ4_NAME.to_owned()),
                        compress_min: if lz4 { COMPRESS_MIN } else { 0 },
                    },
                };
                if self.link.push_slice(&welcome.to_bytes()).is_err() {
                    return self.stop(End::Io("outbound queue full".into()));
                }
                if lz4 {
                    self.link.compress_from(COMPRESS_MIN);
                }
                self.greeted = true;
                self.to_game.push(ToGame::ClientConnected {
                    client: self.client,
                });
                tracing::debug!("connected");
                return ControlFlow::Continue(());
            }
            ClientFrame::Hello { version, .. } => format!(
                "this server speaks protocols {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION}; the client speaks {version}"
            ),
            _ => format!(
                "this server speaks protocol {PROTOCOL_VERSION}: a client must open with Hello{{version: {PROTOCOL_VERSION}}} \
                 (clients of protocol 2 and older do not); update the client"
            ),
        };
        push_error(self.link, ErrorCode::UnsupportedVersion, message);
        self.stop(End::WrongVersion)
    }

    fn reply_error(&mut self, code: ErrorCode, message: String) -> ControlFlow<()> {
        let frame = ServerFrame::Error {
            req_id: 0,
            code,
            message,
        };
        if self.link.push_slice(&frame.to_bytes()).is_err() {
            return self.stop(End::Io("outbound queue full".into()));
        }
        ControlFlow::Continue(())
    }

    fn stop(&mut self, end: End) -> ControlFlow<()> {
        self.end = Some(end);
        ControlFlow::Break(())
    }
}

enum Admit {
    Yes,
    Refuse,
    Disconnect,
}

/// A token bucket: `rate` frames per second, bursts of twice that. A client
/// refused for as many frames again as its burst is disconnected.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refused: u32,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        let burst = f64::from(rate) * 2.0;
        Self {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            refused: 0,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> Admit {
        let now = Instant::now();
        let elapsed = now
            .saturating_duration_since(self.last)
            .min(Duration::from_secs(10));
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused = 0;
            Admit::Yes
        } else {
            self.refused += 1;
            if f64::from(self.refused) > self.burst {
                Admit::Disconnect
            } else {
                Admit::Refuse
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            max_frame: 1024,
            queue_bytes: 1 << 20,
            rate: 100,
            frame_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_quiet_client_is_probed_at_half_its_idle_time_then_dropped() {
        let mut c = Clock::new(limits());
        let t0 = c.last_heard;
        assert_eq!(c.next_alarm(), t0 + Duration::from_secs(5));
        assert_eq!(c.alarm(t0 + Duration::from_secs(4)), Alarm::Wait);
        assert_eq!(c.alarm(t0 + Duration::from_secs(5)), Alarm::Probe);
        assert_eq!(c.next_alarm(), t0 + Duration::from_secs(10));
        assert_eq!(c.alarm(t0 + Duration::from_secs(6)), Alarm::Wait);
        assert_eq!(c.alarm(t0 + Duration::from_secs(10)), Alarm::Idle);
    }

    #[test]
    fn a_client_heard_since_the_alarm_was_set_is_left_alone() {
        let mut c = Clock::new(limits());
        let t0 = c.last_heard;
        assert!(!c.heard(false), "a whole frame moves no alarm");
        assert_eq!(c.alarm(t0 + Duration::from_secs(5)), Alarm::Wait);
        assert!(c.next_alarm() > t0 + Duration::from_secs(5));
    }

    #[test]
    fn a_frame_begun_must_end_within_the_frame_timeout() {
        let mut c = Clock::new(limits());
        assert!(c.heard(true), "a frame began: the alarm moves sooner");
        let began = c.last_heard;
        assert_eq!(c.next_alarm(), began + Duration::from_secs(2));
        // Trickling more bytes of the same frame buys no time.
        assert!(!c.heard(true));
        assert_eq!(c.next_alarm(), began + Duration::from_secs(2));
        assert_eq!(c.alarm(began + Duration::from_secs(2)), Alarm::SlowFrame);
        // A frame that ends in time clears it.
        let mut c = Clock::new(limits());
        c.heard(true);
        c.heard(false);
        assert_eq!(c.alarm(c.last_heard + Duration::from_secs(3)), Alarm::Wait);
    }
}
