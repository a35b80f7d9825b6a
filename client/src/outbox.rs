//! The sending half of a [`Connection`](crate::connection::Connection): frames leave in the
//! order callers hand them over, written by whichever thread finds the socket idle.
//!
//! # Why callers write
//!
//! Handing every frame to the connection's writer thread costs a thread wake-up per
//! request, and on a busy machine a wake-up waits for a core: the load generator's
//! end-to-end path had seven of them (producer, sender, writer, broker, disk sync, reader,
//! consumer). So a caller whose frame finds the socket idle — nothing queued, nobody
//! writing — writes it itself, without blocking (`MSG_DONTWAIT`). Only what the socket does
//! not take at once, and frames handed over while another write runs, go to the writer
//! thread, which writes them in bursts (one vectored write for many frames) and may block
//! on a full socket. A caller never blocks on the network.
//!
//! # Order
//!
//! At most one party holds the *turn*: a caller writing directly, or the writer thread
//! (connecting, writing, or woken to write). Only the holder writes to the socket. A frame
//! that finds the turn taken is queued behind everything before it, and the holder looks at
//! the queue before giving the turn up: a caller that leaves frames behind passes the turn
//! to the writer thread (with a wake-up), the writer gives it up only with the queue empty.
//! So bytes reach the socket in the order frames were handed over, and a frame's bytes are
//! never interleaved with another's (a partial direct write queues its remainder first).
//! Invariant: nobody holds the turn ⇒ the queue is empty.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Buf, Bytes};

/// Frames the writer gathers into one vectored write at most.
pub const MAX_WRITE_FRAMES: usize = 256;
/// Bytes the writer gathers into one vectored write, beyond which it writes what it has.
pub const MAX_WRITE_BYTES: usize = 16 << 20;
/// Pieces one `sendmsg` takes at most (the kernel's `IOV_MAX`).
const MAX_IOVECS: usize = 1024;

/// An encoded frame on its way to the socket: the fixed part and header, and the payload
/// (empty for most requests), written one after the other.
pub(crate) struct Outgoing {
    pub(crate) head: Bytes,
    /// The payload, in pieces written one after another (a produce request's batches,
    /// each straight from the buffer it was encoded into).
    pub(crate) payload: Vec<Bytes>,
}

impl Outgoing {
    /// Bytes in all.
    fn len(&self) -> usize {
        self.head.len() + self.payload.iter().map(Bytes::len).sum::<usize>()
    }

    /// Drops the first `count` bytes (those already written).
    fn advance(&mut self, mut count: usize) {
        let from_head = count.min(self.head.len());
        self.head.advance(from_head);
        count -= from_head;
        for piece in &mut self.payload {
            let from_piece = count.min(piece.len());
            piece.advance(from_piece);
            count -= from_piece;
        }
    }

    /// Its non-empty pieces, in order.
    fn slices(&self) -> impl Iterator<Item = IoSlice<'_>> {
        std::iter::once(&self.head)
            .chain(&self.payload)
            .filter(|piece| !piece.is_empty())
            .map(|piece| IoSlice::new(piece))
    }
}

/// What callers and the writer thread share.
struct State {
    /// Frames waiting for the writer thread, oldest first.
    queue: VecDeque<Outgoing>,
    /// Someone holds the turn (see the module docs).
    turn_taken: bool,
    /// The connected socket, for callers' direct writes (`None` until connected).
    socket: Option<Arc<TcpStream>>,
}

/// The callers' side, owned by the connection: once it is dropped the writer thread
/// stops.
pub(crate) struct Outbox {
    state: Arc<Mutex<State>>,
    wake: flume::Sender<()>,
}

/// The writer thread's side.
pub(crate) struct WriterSide {
    state: Arc<Mutex<State>>,
    wake: flume::Receiver<()>,
}

/// What became of a frame handed to [`Outbox::send`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Handed {
    /// Written to the socket on the caller's thread.
    Written,
    /// Queued for the writer thread (all of it, or what the socket did not take).
    Queued,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A new outbox: the writer thread holds the turn until it has connected.
pub(crate) fn outbox() -> (Outbox, WriterSide) {
    let state = Arc::new(Mutex::new(State {
        queue: VecDeque::new(),
        turn_taken: true,
        socket: None,
    }));
    let (wake, woken) = flume::bounded(1);
    (
        Outbox {
            state: state.clone(),
            wake,
        },
        WriterSide { state, wake: woken },
    )
}

impl Outbox {
    /// Writes `frame` now if the socket is idle, else queues it for the writer thread. An
    /// error means the socket failed during a direct write: the connection must break.
    pub(crate) fn send(&self, frame: Outgoing) -> io::Result<Handed> {
        let socket = {
            let mut state = lock(&self.state);
            if state.turn_taken {
                state.queue.push_back(frame);
                return Ok(Handed::Queued);
            }
            let Some(socket) = state.socket.clone() else {
                // Not connected yet: cannot happen (the writer holds the turn until then),
                // but queueing is always right.
                state.queue.push_back(frame);
                state.turn_taken = true;
                self.wake_writer();
                return Ok(Handed::Queued);
            };
            state.turn_taken = true;
            socket
        };
        let mut frame = frame;
        let written = write_without_waiting(&socket, &frame);
        let mut state = lock(&self.state);
        let handed = match written {
            Ok(count) if count == frame.len() => Handed::Written,
            Ok(count) => {
                frame.advance(count);
                state.queue.push_front(frame);
                Handed::Queued
            }
            Err(error) => {
                // The writer thread takes the turn and stops on the broken connection.
                drop(state);
                self.wake_writer();
                return Err(error);
            }
        };
        if state.queue.is_empty() {
            state.turn_taken = false;
        } else {
            self.wake_writer();
        }
        Ok(handed)
    }

    fn wake_writer(&self) {
        // Full means a wake-up is already waiting for the writer.
        let _ = self.wake.try_send(());
    }
}

impl WriterSide {
    /// The socket is connected: callers may write to it once the writer gives up the turn.
    pub(crate) fn connected(&self, socket: TcpStream) {
        lock(&self.state).socket = Some(Arc::new(socket));
    }

    /// Takes the frames to write next, in order, up to the burst limits, holding the
    /// turn; with nothing queued, gives the turn up and waits until it is handed back.
    /// `None` once every [`Outbox`] handle is gone.
    pub(crate) fn next_burst(&self, burst: &mut Vec<Outgoing>) -> Option<()> {
        loop {
            {
                let mut state = lock(&self.state);
                let mut bytes = 0;
                while burst.len() < MAX_WRITE_FRAMES && bytes < MAX_WRITE_BYTES {
                    let Some(frame) = state.queue.pop_front() else {
                        break;
                    };
                    bytes += frame.len();
                    burst.push(frame);
                }
                if !burst.is_empty() {
                    return Some(());
                }
                state.turn_taken = false;
            }
            self.wake.recv().ok()?;
        }
    }
}

/// Writes as much of `frame` as the socket takes without waiting; returns the count.
fn write_without_waiting(socket: &TcpStream, frame: &Outgoing) -> io::Result<usize> {
    let mut slices: Vec<IoSlice<'_>> = frame.slices().collect();
    let mut remaining = &mut slices[..];
    let mut written = 0;
    while !remaining.is_empty() {
        let count = remaining.len().min(MAX_IOVECS);
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix; the kernel only reads
        // the `count` slices, which borrow live buffers for the call.
        let message = libc::msghdr {
            msg_name: std::ptr::null_mut(),
            msg_namelen: 0,
            msg_iov: remaining.as_ptr() as *mut libc::iovec,
            msg_iovlen: count,
            msg_control: std::ptr::null_mut(),
            msg_controllen: 0,
            msg_flags: 0,
        };
        let sent = unsafe {
            libc::sendmsg(
                socket.as_raw_fd(),
                &message,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if sent < 0 {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => return Ok(written),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(error),
            }
        }
        let sent = sent as usize;
        if sent == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written += sent;
        IoSlice::advance_slices(&mut remaining, sent);
    }
    Ok(written)
}

/// Writes every frame of `burst` with as few vectored writes as the socket allows,
/// waiting for room as needed.
pub(crate) fn write_burst(stream: &mut TcpStream, burst: &[Outgoing]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = burst.iter().flat_map(Outgoing::slices).collect();
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        match stream.write_vectored(remaining) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut remaining, written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// An outbox on a connected socket whose writer has given the turn up, and the peer's
    /// end of the socket (which reads nothing until the test does).
    fn idle_outbox() -> (Outbox, WriterSide, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        let (outbox, writer) = outbox();
        writer.connected(socket);
        lock(&writer.state).turn_taken = false;
        (outbox, writer, peer)
    }

    fn frame(head: &[u8], body: Vec<u8>) -> Outgoing {
        Outgoing {
            head: Bytes::copy_from_slice(head),
            payload: vec![Bytes::new(), Bytes::from(body)],
        }
    }

    #[test]
    fn a_frame_on_an_idle_socket_is_written_by_its_caller() {
        let (outbox, writer, mut peer) = idle_outbox();
        assert_eq!(
            outbox.send(frame(b"head", vec![7; 100])).unwrap(),
            Handed::Written
        );
        let mut received = vec![0; 104];
        peer.read_exact(&mut received).unwrap();
        assert_eq!(&received[..4], b"head");
        assert!(received[4..].iter().all(|byte| *byte == 7));
        // The turn is free again and the writer has nothing to do.
        assert!(!lock(&writer.state).turn_taken);
        assert!(writer.wake.is_empty());
    }

    #[test]
    fn what_a_full_socket_does_not_take_goes_to_the_writer_before_later_frames() {
        let (outbox, writer, mut peer) = idle_outbox();
        // Far more than the socket's buffers hold while the peer reads nothing.
        let big = 64 << 20;
        assert_eq!(
            outbox.send(frame(b"A", vec![1; big])).unwrap(),
            Handed::Queued
        );
        assert_eq!(
            outbox.send(frame(b"B", vec![2; 10])).unwrap(),
            Handed::Queued
        );
        assert!(lock(&writer.state).turn_taken);
        assert_eq!(writer.wake.len(), 1, "the writer is woken once");
        let reader = std::thread::spawn(move || {
            let mut received = Vec::new();
            peer.read_to_end(&mut received).unwrap();
            received
        });
        let mut socket = (**lock(&writer.state).socket.as_ref().unwrap())
            .try_clone()
            .unwrap();
        // A's remainder alone makes a burst (it is past the burst size), then B.
        let mut lengths = Vec::new();
        while lengths.len() < 2 {
            let mut burst = Vec::new();
            writer.next_burst(&mut burst).unwrap();
            lengths.extend(burst.iter().map(Outgoing::len));
            write_burst(&mut socket, &burst).unwrap();
        }
        assert!(lengths[0] < 1 + big, "part of A was written directly");
        assert_eq!(lengths[1], 1 + 10);
        drop(writer);
        drop(outbox);
        socket.shutdown(std::net::Shutdown::Both).unwrap();
        let received = reader.join().unwrap();
        assert_eq!(received.len(), 1 + big + 1 + 10);
        assert_eq!(received[0], b'A');
        assert!(received[1..1 + big].iter().all(|byte| *byte == 1));
        assert_eq!(received[1 + big], b'B');
        assert!(received[2 + big..].iter().all(|byte| *byte == 2));
    }
}
