//! The `push` scenario's driving logic, on the REST side: HTTP/1.1 keep-alive senders, one
//! thread each, posting `POST /api/v1/push/users` for random users at a fixed rate, each push's
//! `data` carrying its send time so the receiving connections (which only authenticate, like
//! `connect`'s) measure delivery latency.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::payload;
use crate::plan::{now_ns, RunPlan, Scenario, Target, WireFormat};
use crate::stats::PushStats;

/// Starts the REST senders of a `push` run (none for other scenarios), sending from
/// `start_ns` to the end of the measured phase.
pub(crate) fn start(plan: &RunPlan, start_ns: u64) -> Vec<std::thread::JoinHandle<PushStats>> {
    let Scenario::Push {
        rate,
        senders,
        payload,
        ref api_key,
    } = plan.scenario
    else {
        return Vec::new();
    };
    let senders = senders.max(1);
    (0..senders)
        .map(|i| {
            let sender = Sender {
                target: plan.common.rest_target().clone(),
                api_key: api_key.clone(),
                rate: rate / f64::from(senders),
                start_ns,
                end_ns: start_ns + plan.common.duration.as_nanos() as u64,
                users: plan.connections,
                payload,
                sender: u64::from(i),
            };
            std::thread::spawn(move || sender.run())
        })
        .collect()
}

/// Waits for the senders and adds up what they saw (`None` without senders).
pub(crate) fn join(senders: Vec<std::thread::JoinHandle<PushStats>>) -> Option<PushStats> {
    let mut total: Option<PushStats> = None;
    for s in senders {
        let Ok(st) = s.join() else { continue };
        match &mut total {
            None => total = Some(st),
            Some(t) => t.add(st),
        }
    }
    total
}

/// One sender's job.
struct Sender {
    target: Target,
    api_key: String,
    /// Pushes per second from this sender.
    rate: f64,
    start_ns: u64,
    end_ns: u64,
    /// Users are `u0 .. u{users-1}`.
    users: u64,
    payload: usize,
    /// Sequence numbers are `(sender << 32) | n`.
    sender: u64,
}

impl Sender {
    /// Sends until `end_ns` (open loop: a slow answer delays the next request, and the
    /// achieved rate shows it).
    fn run(self) -> PushStats {
        let mut st = PushStats::new();
        let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
        let mut rng = 0x2545_F491_4F6C_DD1D_u64 ^ (self.sender + 1).wrapping_mul(now_ns() | 1);
        let mut body = Vec::with_capacity(256);
        let mut req = Vec::with_capacity(512);
        let interval = 1e9 / self.rate.max(0.001);
        let mut n: u64 = 0;
        loop {
            let due = self.start_ns + (n as f64 * interval) as u64;
            let now = now_ns();
            if due >= self.end_ns || now >= self.end_ns {
                break;
            }
            if due > now {
                std::thread::sleep(Duration::from_nanos(due - now));
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let user = rng % self.users.max(1);
            let t = now_ns();
            body.clear();
            let _ = write!(
                body,
                "{{\"userId\":\"u{user}\",\"event\":\"push\",\"data\":"
            );
            payload::write(
                WireFormat::Json,
                t,
                (self.sender << 32) | (n & 0xffff_ffff),
                self.payload,
                &mut body,
            );
            body.push(b'}');
            req.clear();
            let _ = write!(
                req,
                "POST /api/v1/push/users HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                self.target.host,
                self.api_key,
                body.len()
            );
            req.extend_from_slice(&body);
            n += 1;
            st.sent += 1;
            if conn.is_none() {
                match TcpStream::connect(self.target.addr).and_then(|s| {
                    s.set_nodelay(true)?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let r = BufReader::new(s.try_clone()?);
                    Ok((s, r))
                }) {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        *st.errors
                            .entry(format!("connect_{:?}", e.kind()))
                            .or_default() += 1;
                        continue;
                    }
                }
            }
            let Some((w, r)) = conn.as_mut() else {
                continue;
            };
            let sent_at = now_ns();
            match w.write_all(&req).and_then(|()| read_response(r)) {
                Ok((status, resp)) => {
                    st.http.saturating_record(now_ns().saturating_sub(sent_at));
                    if status == 200 {
                        st.ok += 1;
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&resp) {
                            st.delivered +=
                                v.get("delivered").and_then(|d| d.as_u64()).unwrap_or(0);
                            let offline = v
                                .get("offline")
                                .and_then(|o| o.as_array())
                                .map_or(0, |a| a.len() as u64);
                            st.offline += offline;
                            // One user per push: reached unless named offline.
                            st.reached += u64::from(offline == 0);
                        }
                    } else {
                        *st.errors.entry(format!("http_{status}")).or_default() += 1;
                    }
                }
                Err(e) => {
                    *st.errors.entry(format!("io_{:?}", e.kind())).or_default() += 1;
                    conn = None;
                }
            }
        }
        st
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` body: `(status, body)`.
fn read_response(r: &mut BufReader<TcpStream>) -> io::Result<(u16, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
    let mut len = 0usize;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((status, body))
}
