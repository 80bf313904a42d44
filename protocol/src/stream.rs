//! Length-prefixed framing for stream transports (TCP, KCP): each frame is
//! preceded by its length as a u32, little-endian.

use bytes::{Buf, BytesMut};

/// Bytes in the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Largest single write to hand a stream transport. KCP refuses one send
/// that needs 128 or more segments (about 172 KiB at MTU 1400), so both
/// sides write big frames in pieces of this size.
pub const STREAM_WRITE_CHUNK: usize = 32 * 1024;

/// A problem with the framing itself (not with a frame's contents).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame longer than the maximum was announced. Its bytes are skipped
    /// as they arrive, so the stream stays usable.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: usize, max: usize },
    /// A zero-length frame, or one so large the peer cannot be trusted to
    /// be speaking this protocol; the connection should close.
    #[error("invalid frame length {0}")]
    BadLength(usize),
}

/// Splits a byte stream into frames. Feed it bytes with [`buffer_mut`]
/// (for example through `AsyncReadExt::read_buf`, which is cancel-safe), then
/// drain frames with [`next_frame`].
///
/// [`buffer_mut`]: FrameDecoder::buffer_mut
/// [`next_frame`]: FrameDecoder::next_frame
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max: usize,
    /// Bytes of an oversized frame still to discard.
    skipping: usize,
}

/// An oversized frame is skipped rather than fatal only up to this multiple
/// of the maximum; beyond that the peer is not speaking the protocol.
const SKIP_LIMIT_FACTOR: usize = 64;

impl FrameDecoder {
    /// A decoder accepting frames of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max,
            skipping: 0,
        }
    }

    /// The buffer to read incoming bytes into: room for a few frames, so
    /// one read takes what a server wrote at once.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        self.buf.reserve(8 * 1024);
        &mut self.buf
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<BytesMut>, FrameError> {
        if self.skipping > 0 {
            let n = self.skipping.min(self.buf.len());
            self.buf.advance(n);
            self.skipping -= n;
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        if self.buf.len() < LENGTH_PREFIX {
            self.release_idle_buffer();
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len == 0 || len > self.max.saturating_mul(SKIP_LIMIT_FACTOR) {
            return Err(FrameError::BadLength(len));
        }
        if len > self.max {
            self.buf.advance(LENGTH_PREFIX);
            self.skipping = len;
            let n = self.skipping.min(self.buf.len());
            self.buf.advance(n);
            self.skipping -= n;
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if self.buf.len() < LENGTH_PREFIX + len {
            self.buf.reserve(LENGTH_PREFIX + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(LENGTH_PREFIX);
        Ok(Some(self.buf.split_to(len)))
    }

    /// An idle connection should not pin a large buffer: once drained, drop
    /// capacity grown by a big frame.
    fn release_idle_buffer(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = BytesMut::new();
        }
    }
}

/// Writes `frame` with its length prefix into `out`.
pub fn write_prefixed(out: &mut Vec<u8>, frame: &[u8]) {
    out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    out.extend_from_slice(frame);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_across_reads() {
        let mut wire = Vec::new();
        write_prefixed(&mut wire, b"\x02abcdefgh");
        write_prefixed(&mut wire, b"\x02xyz");
        let mut d = FrameDecoder::new(1024);
        let mut got = Vec::new();
        for byte in wire {
            d.buffer_mut().extend_from_slice(&[byte]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f.to_vec());
            }
        }
        assert_eq!(got, vec![b"\x02abcdefgh".to_vec(), b"\x02xyz".to_vec()]);
    }

    #[test]
    fn oversized_frame_is_skipped_and_stream_continues() {
        let mut wire = Vec::new();
        write_prefixed(&mut wire, &[1u8; 100]);
        write_prefixed(&mut wire, b"ok");
        let mut d = FrameDecoder::new(10);
        d.buffer_mut().extend_from_slice(&wire[..50]);
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge { len: 100, max: 10 })
        );
        assert_eq!(d.next_frame(), Ok(None));
        d.buffer_mut().extend_from_slice(&wire[50..]);
        assert_eq!(d.next_frame().unwrap().as_deref(), Some(&b"ok"[..]));
    }

    #[test]
    fn zero_and_absurd_lengths_are_fatal() {
        let mut d = FrameDecoder::new(10);
        d.buffer_mut().extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(d.next_frame(), Err(FrameError::BadLength(0)));
        let mut d = FrameDecoder::new(10);
        d.buffer_mut().extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(d.next_frame(), Err(FrameError::BadLength(_))));
    }
}
