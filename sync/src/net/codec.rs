//! Length-prefixed frames for `/hearth/sync/1`, with the size limit checked before anything is
//! allocated.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of one encoded message.
//! The reader checks the length against the limit first, then reads at most that many bytes,
//! growing its buffer only as bytes actually arrive, so a peer that announces 16 MiB and sends
//! three bytes costs us three bytes. A frame that is too large, truncated, or does not decode is
//! an `InvalidData` I/O error: libp2p's request-response handler then closes that stream and
//! reports an inbound (or outbound) failure; the connection and other streams carry on.
//!
//! ```
//! use hearth_sync::net::codec::{read_frame, write_frame};
//! # futures::executor::block_on(async {
//! let mut wire = Vec::new();
//! write_frame(&mut wire, b"hello", 16).await.unwrap();
//! assert_eq!(wire, b"\0\0\0\x05hello");
//! let frame = read_frame(&mut wire.as_slice(), 16).await.unwrap();
//! assert_eq!(frame, b"hello");
//! // A frame above the limit is refused before its body is read.
//! assert!(read_frame(&mut wire.as_slice(), 4).await.is_err());
//! # });
//! ```

use super::inbound::Inbound;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use std::io;
use std::marker::PhantomData;

/// A message that travels in one frame. The real protocol's message implements it; tests use
/// their own types.
pub trait WireMessage: Sized + Send + 'static {
    /// The message's bytes.
    fn to_frame(&self) -> Vec<u8>;
    /// Parses a frame. The error is a short reason without any of the frame's content.
    fn from_frame(bytes: &[u8]) -> Result<Self, String>;
}

/// Raw frames (used by tests and by tools that look at the wire without decoding it).
impl WireMessage for Vec<u8> {
    fn to_frame(&self) -> Vec<u8> {
        self.clone()
    }
    fn from_frame(bytes: &[u8]) -> Result<Self, String> {
        Ok(bytes.to_vec())
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one frame of at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(io: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let len = read_len(io).await?;
    if len > max {
        return Err(invalid(format!(
            "frame of {len} bytes exceeds the limit of {max} bytes"
        )));
    }
    read_body(io, len).await
}

/// Reads a frame's length prefix.
async fn read_len<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<usize> {
    read_len_or_end(io)
        .await?
        .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}

/// Reads a frame's length prefix, or `None` if the stream ends cleanly before it.
pub async fn read_len_or_end<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<Option<usize>> {
    let mut len = [0u8; 4];
    let first = io.read(&mut len).await?;
    if first == 0 {
        return Ok(None);
    }
    io.read_exact(&mut len[first..]).await?;
    Ok(Some(u32::from_be_bytes(len) as usize))
}

/// Reads a frame's body of `len` bytes (admitted by the caller).
pub async fn read_body<R: AsyncRead + Unpin>(io: &mut R, len: usize) -> io::Result<Vec<u8>> {
    // Grow with the bytes that arrive, never up front to the announced length.
    let mut buf = Vec::with_capacity(len.min(64 * 1024));
    let read = io.take(len as u64).read_to_end(&mut buf).await?;
    if read != len {
        return Err(invalid("truncated frame"));
    }
    Ok(buf)
}

/// Writes one frame, refusing to send more than `max` bytes (the peer would refuse it).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    io: &mut W,
    bytes: &[u8],
    max: usize,
) -> io::Result<()> {
    if bytes.len() > max {
        return Err(invalid(format!(
            "refusing to send a frame of {} bytes (limit {max})",
            bytes.len()
        )));
    }
    let len = u32::try_from(bytes.len()).map_err(|_| invalid("frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.flush().await?;
    Ok(())
}

/// The request-response codec: one framed message each way per stream.
pub struct FrameCodec<M> {
    max: usize,
    /// The node's inbound limits, when it has them ([`super::inbound`]).
    inbound: Option<Inbound>,
    /// The peer of this copy's connection (set when the copy for a connection is made).
    peer: Option<PeerId>,
    _m: PhantomData<fn() -> M>,
}

impl<M> FrameCodec<M> {
    /// A codec refusing frames above `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameCodec {
            max,
            inbound: None,
            peer: None,
            _m: PhantomData,
        }
    }

    /// A codec that admits each frame through `inbound` before reading its body: the global
    /// budget, and a stranger's smaller limits.
    pub fn with_inbound(max: usize, inbound: Inbound) -> Self {
        FrameCodec {
            inbound: Some(inbound),
            ..FrameCodec::new(max)
        }
    }
}

impl<M> Clone for FrameCodec<M> {
    /// The copy for a new connection takes the peer the gate just named; copies for the
    /// streams of a connection keep their connection's peer.
    fn clone(&self) -> Self {
        FrameCodec {
            max: self.max,
            inbound: self.inbound.clone(),
            peer: self
                .peer
                .or_else(|| self.inbound.as_ref().and_then(Inbound::next_peer)),
            _m: PhantomData,
        }
    }
}

impl<M: WireMessage> FrameCodec<M> {
    async fn read<T: AsyncRead + Unpin + Send>(&self, io: &mut T, request: bool) -> io::Result<M> {
        let len = read_len(io).await?;
        if len > self.max {
            return Err(invalid(format!(
                "frame of {len} bytes exceeds the limit of {} bytes",
                self.max
            )));
        }
        // Admitted (and counted against the budget) before a byte of the body is read.
        let _admission = match &self.inbound {
            Some(i) => Some(i.admit(self.peer, len, request).map_err(invalid)?),
            None => None,
        };
        let frame = read_body(io, len).await?;
        M::from_frame(&frame).map_err(invalid)
    }

    async fn write<T: AsyncWrite + Unpin + Send>(&self, io: &mut T, m: M) -> io::Result<()> {
        let bytes = m.to_frame();
        write_frame(io, &bytes, self.max).await?;
        io.close().await
    }
}

impl<M: WireMessage> libp2p::request_response::Codec for FrameCodec<M> {
    type Protocol = StreamProtocol;
    type Request = M;
    type Response = M;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<M>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io, true).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<M>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io, false).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: M) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write(io, req).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: M) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write(io, res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn round_trip_and_limits() {
        block_on(async {
            let mut wire = Vec::new();
            write_frame(&mut wire, &[7u8; 100], 100).await.unwrap();
            assert_eq!(
                read_frame(&mut wire.as_slice(), 100).await.unwrap(),
                vec![7u8; 100]
            );
            assert!(read_frame(&mut wire.as_slice(), 99).await.is_err());
            assert!(
                write_frame(&mut Vec::new(), &[0u8; 101], 100)
                    .await
                    .is_err()
            );
        });
    }

    #[test]
    fn huge_announced_length_is_refused_without_allocating() {
        block_on(async {
            let wire = [0xffu8, 0xff, 0xff, 0xff, 1, 2, 3];
            let e = read_frame(&mut &wire[..], 16 * 1024 * 1024)
                .await
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        });
    }

    #[test]
    fn truncated_frames_are_errors() {
        block_on(async {
            let wire = [0u8, 0, 0, 10, 1, 2, 3];
            assert!(read_frame(&mut &wire[..], 100).await.is_err());
            let wire = [0u8, 0];
            assert!(read_frame(&mut &wire[..], 100).await.is_err());
        });
    }

    /// A reader that hands out one byte per read, as a slow stream might.
    struct ByteByByte<'a>(&'a [u8]);

    impl AsyncRead for ByteByByte<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = self.0.len().min(buf.len()).min(1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            std::task::Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn a_length_is_read_whole_in_pieces_and_a_clean_end_is_not_an_error() {
        block_on(async {
            assert_eq!(read_len_or_end(&mut &[][..]).await.unwrap(), None);
            let wire = [0u8, 0, 1, 2, 9];
            assert_eq!(
                read_len_or_end(&mut ByteByByte(&wire)).await.unwrap(),
                Some(258)
            );
            assert_eq!(read_len_or_end(&mut &wire[..]).await.unwrap(), Some(258));
            // A length cut short is an error, not an end.
            let e = read_len_or_end(&mut ByteByByte(&wire[..2]))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            // Where a frame must come, its absence is an error.
            let e = read_frame(&mut &[][..], 100).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        });
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic sweep over short inputs of every length prefix shape.
        block_on(async {
            let mut x: u32 = 0x1234_5678;
            for n in 0..2000usize {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let len = n % 40;
                let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 24)) as u8).collect();
                let _ = read_frame(&mut bytes.as_slice(), 64).await;
            }
        });
    }
}
