//! The handshake that opens a KCP session (`docs/protocol.md`, "KCP
//! handshake"). Its datagrams start with conv 0, which no session uses, so
//! they never reach KCP. The server answers a `Hello` with a cookie that it
//! can check later without having kept anything: a MAC over the client's
//! address and the time. Only a `Connect` that returns a fresh cookie for
//! its own address creates a session, and no reply is larger than the
//! datagram it answers (requests are padded to [`REQUEST_LEN`]).

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Mac};
use blake2::Blake2sMac;

/// The bytes after conv 0 that mark a handshake datagram.
pub const MAGIC: [u8; 4] = *b"WYRM";

/// The handshake version a `Hello` carries.
pub const HANDSHAKE_VERSION: u8 = 1;

/// Length of every client request (`Hello`, `Connect`), zero-padded: the
/// server's replies are shorter, so spoofing a source address buys no
/// amplification.
pub const REQUEST_LEN: usize = 64;

/// A cookie: the second it was made (u32 LE, Unix time) and a 16-byte MAC.
pub const COOKIE_LEN: usize = 20;

/// How long a cookie stays good.
pub const COOKIE_LIFETIME_S: u32 = 30;

/// Bytes before a handshake datagram's body: conv 0, magic, kind.
const HEAD: usize = 9;

const HELLO: u8 = 1;
const COOKIE: u8 = 2;
const CONNECT: u8 = 3;
const ACCEPT: u8 = 4;
const REFUSE: u8 = 5;
const RESET: u8 = 6;

/// Why a server refused a `Connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds as many connections as it allows.
    ServerFull,
    /// The client's address holds as many connections as one may.
    AddressFull,
    /// The cookie is stale or not this address's: start again with `Hello`.
    BadCookie,
    /// The `Hello` asked for a handshake version the server does not speak.
    Version,
}

impl Refusal {
    fn code(self) -> u8 {
        match self {
            Refusal::ServerFull => 1,
            Refusal::AddressFull => 2,
            Refusal::BadCookie => 3,
            Refusal::Version => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Refusal::ServerFull,
            2 => Refusal::AddressFull,
            3 => Refusal::BadCookie,
            4 => Refusal::Version,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::ServerFull => "the server is full",
            Refusal::AddressFull => "too many connections from this address",
            Refusal::BadCookie => "the handshake cookie is stale or not for this address",
            Refusal::Version => "the server does not speak this handshake version",
        })
    }
}

/// A handshake datagram, either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    /// Client → server: may I connect?
    Hello { version: u8 },
    /// Server → client: return this to prove you receive at your address.
    Cookie([u8; COOKIE_LEN]),
    /// Client → server: open a session with this conv.
    Connect { cookie: [u8; COOKIE_LEN], conv: u32 },
    /// Server → client: the session with this conv is open.
    Accept { conv: u32 },
    /// Server → client: no session, and why.
    Refuse(Refusal),
    /// Server → client: a KCP segment with this conv came from an address
    /// that has no session with it (the server restarted, or dropped the
    /// session): the client's session is over.
    Reset { conv: u32 },
}

/// Whether a datagram is a handshake datagram (conv 0) rather than KCP.
pub fn is_handshake(datagram: &[u8]) -> bool {
    datagram.len() >= 4 && datagram[..4] == [0; 4]
}

impl Datagram {
    /// Decodes a handshake datagram; `None` for anything malformed (which
    /// is dropped without a reply). Requests shorter than [`REQUEST_LEN`]
    /// are malformed: answering them could amplify.
    pub fn decode(d: &[u8]) -> Option<Datagram> {
        if d.len() < HEAD || d[..4] != [0; 4] || d[4..8] != MAGIC {
            return None;
        }
        let body = &d[HEAD..];
        let request = d.len() >= REQUEST_LEN;
        match d[8] {
            HELLO if request => Some(Datagram::Hello { version: body[0] }),
            COOKIE => Some(Datagram::Cookie(body.get(..COOKIE_LEN)?.try_into().ok()?)),
            CONNECT if request => {
                let cookie = body[..COOKIE_LEN].try_into().ok()?;
                let conv = u32::from_le_bytes(body[COOKIE_LEN..COOKIE_LEN + 4].try_into().ok()?);
                Some(Datagram::Connect { cookie, conv })
            }
            ACCEPT => Some(Datagram::Accept {
                conv: u32::from_le_bytes(body.get(..4)?.try_into().ok()?),
            }),
            REFUSE => Some(Datagram::Refuse(Refusal::from_code(*body.first()?)?)),
            RESET => Some(Datagram::Reset {
                conv: u32::from_le_bytes(body.get(..4)?.try_into().ok()?),
            }),
            _ => None,
        }
    }

    /// Encodes the datagram; requests come padded to [`REQUEST_LEN`].
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(REQUEST_LEN);
        d.extend_from_slice(&[0; 4]);
        d.extend_from_slice(&MAGIC);
        match *self {
            Datagram::Hello { version } => {
                d.extend_from_slice(&[HELLO, version]);
                d.resize(REQUEST_LEN, 0);
            }
            Datagram::Cookie(cookie) => {
                d.push(COOKIE);
                d.extend_from_slice(&cookie);
            }
            Datagram::Connect { cookie, conv } => {
                d.push(CONNECT);
                d.extend_from_slice(&cookie);
                d.extend_from_slice(&conv.to_le_bytes());
                d.resize(REQUEST_LEN, 0);
            }
            Datagram::Accept { conv } => {
                d.push(ACCEPT);
                d.extend_from_slice(&conv.to_le_bytes());
            }
            Datagram::Refuse(why) => d.extend_from_slice(&[REFUSE, why.code()]),
            Datagram::Reset { conv } => {
                d.push(RESET);
                d.extend_from_slice(&conv.to_le_bytes());
            }
        }
        d
    }
}

/// Makes and checks cookies with a secret drawn when the server starts.
pub struct CookieJar {
    key: [u8; 32],
}

impl CookieJar {
    /// A jar with a fresh random secret.
    pub fn new() -> std::io::Result<Self> {
        let mut key = [0; 32];
        getrandom::getrandom(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self { key })
    }

    /// A cookie for `peer`, made at `now_s` (Unix seconds).
    pub fn make(&self, peer: SocketAddr, now_s: u32) -> [u8; COOKIE_LEN] {
        let mut cookie = [0; COOKIE_LEN];
        cookie[..4].copy_from_slice(&now_s.to_le_bytes());
        cookie[4..].copy_from_slice(&self.mac(peer, now_s));
        cookie
    }

    /// Whether `cookie` was made for `peer` by this jar within the last
    /// [`COOKIE_LIFETIME_S`] seconds.
    pub fn check(&self, peer: SocketAddr, cookie: &[u8; COOKIE_LEN], now_s: u32) -> bool {
        let made = u32::from_le_bytes([cookie[0], cookie[1], cookie[2], cookie[3]]);
        let fresh =
            made <= now_s.saturating_add(1) && now_s.saturating_sub(made) <= COOKIE_LIFETIME_S;
        // Compare every byte whatever the first difference, so timing does
        // not reveal how much of a forged MAC is right.
        let mac = self.mac(peer, made);
        let same = mac
            .iter()
            .zip(&cookie[4..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        fresh && same
    }

    fn mac(&self, peer: SocketAddr, made: u32) -> [u8; 16] {
        let ip = match peer.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let mut mac = <Blake2sMac<U16> as KeyInit>::new_from_slice(&self.key)
            .expect("a 32-byte key is valid for BLAKE2s");
        Mac::update(&mut mac, &made.to_le_bytes());
        Mac::update(&mut mac, &ip.octets());
        Mac::update(&mut mac, &peer.port().to_le_bytes());
        mac.finalize_fixed().into()
    }
}

/// Unix time in seconds (0 if the clock is before 1970).
pub fn unix_seconds() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn datagrams_round_trip_and_replies_are_smaller_than_requests() {
        let cookie = [7; COOKIE_LEN];
        let all = [
            Datagram::Hello { version: 1 },
            Datagram::Cookie(cookie),
            Datagram::Connect {
                cookie,
                conv: 0xdead_beef,
            },
            Datagram::Accept { conv: 42 },
            Datagram::Refuse(Refusal::AddressFull),
            Datagram::Reset { conv: 7 },
        ];
        for d in all {
            let bytes = d.encode();
            assert_eq!(Datagram::decode(&bytes), Some(d));
            assert!(is_handshake(&bytes));
            match d {
                Datagram::Hello { .. } | Datagram::Connect { .. } => {
                    assert_eq!(bytes.len(), REQUEST_LEN)
                }
                _ => assert!(bytes.len() < REQUEST_LEN / 2, "{d:?}: {}", bytes.len()),
            }
        }
    }

    #[test]
    fn short_requests_and_garbage_are_not_answered() {
        let hello = Datagram::Hello { version: 1 }.encode();
        assert_eq!(Datagram::decode(&hello[..REQUEST_LEN - 1]), None);
        assert_eq!(Datagram::decode(&hello[..10]), None);
        let connect = Datagram::Connect {
            cookie: [1; 20],
            conv: 5,
        }
        .encode();
        assert_eq!(Datagram::decode(&connect[..40]), None);
        let mut wrong_magic = hello.clone();
        wrong_magic[5] = b'X';
        assert_eq!(Datagram::decode(&wrong_magic), None);
        let mut kind = hello.clone();
        kind[8] = 9;
        assert_eq!(Datagram::decode(&kind), None);
        assert_eq!(Datagram::decode(&[0; 3]), None);
        assert!(!is_handshake(&[1, 0, 0, 0, 81]));
    }

    #[test]
    fn a_cookie_is_good_for_its_address_and_its_lifetime_only() {
        let jar = CookieJar::new().expect("randomness");
        let peer = addr("203.0.113.5:4000");
        let c = jar.make(peer, 1000);
        assert!(jar.check(peer, &c, 1000));
        assert!(jar.check(peer, &c, 1000 + COOKIE_LIFETIME_S));
        assert!(!jar.check(peer, &c, 1001 + COOKIE_LIFETIME_S), "stale");
        assert!(!jar.check(peer, &c, 998), "from the future");
        assert!(!jar.check(addr("203.0.113.5:4001"), &c, 1000), "other port");
        assert!(!jar.check(addr("203.0.113.6:4000"), &c, 1000), "other host");
        let mut forged = c;
        forged[19] ^= 1;
        assert!(!jar.check(peer, &forged, 1000));
        let mut moved = c;
        moved[..4].copy_from_slice(&1010u32.to_le_bytes());
        assert!(!jar.check(peer, &moved, 1010), "time is under the MAC");
        let other = CookieJar::new().expect("randomness");
        assert!(!other.check(peer, &c, 1000), "another server's secret");
    }
}
