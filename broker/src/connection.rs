//! One client connection on one shard: read frames, run each request as its own task,
//! write the answers in whatever order they finish.
//!
//! # Shape
//!
//! The socket is split in two. The *reader* (this connection's main task) decodes frames
//! and spawns one task per request, up to `max_in_flight_requests_per_connection`; at the
//! limit it stops reading until an answer goes out, so a client that floods requests or
//! never reads its answers holds at most that many requests and their answers. Each
//! request task encodes its answer straight into the connection's outbox; the *writer*
//! task writes whatever the outbox holds whenever it is not empty. A pull's records are
//! not copied into the outbox: they go out from the read's own buffer, after their head.
//! Answers carry the request id, so a long-polling pull never holds up a produce behind it.
//!
//! # Moving to another shard
//!
//! If the first frame is a `BindShard` for another shard ([`bind_shard::move_to`]), reading
//! stops there and the socket (a duplicate of its descriptor), that frame and the bytes
//! read behind it go to that shard, which serves the connection from its first request
//! on ([`serve_handed`]); this shard's halves close their descriptor only.
//!
//! # Ends
//!
//! * The peer closes: pending requests finish (their answers are dropped with the
//!   socket), then the connection's count on the shard is released.
//! * A broken stream (bad magic, CRC, oversize length): a connection-error frame (request
//!   id 0, the typed code) goes out and the connection closes; nothing else on the shard
//!   is disturbed.
//! * Shutdown: the reader stops, in-flight requests finish and are answered, then the
//!   socket closes.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use spillway_storage::signal::Signal;
use spillway_wire::{Envelope, ErrorCode, Frame, FrameDecoder, FrameKind, WireError, WireHeader};

use crate::client_registry::ConnectionKey;
use crate::dispatch;
use crate::handlers::bind_shard;
use crate::refusal::Refusal;
use crate::shard::Shard;

/// Bytes read from the socket at a time (a frame larger than this takes several reads).
const READ_CHUNK_BYTES: usize = 256 << 10;
/// Fewest bytes of room a read asks for. The input buffer is only replaced when less room
/// than this is left: the frames split off it keep its memory alive while their requests
/// run, so asking for a whole chunk of room before every read allocated (and page-faulted)
/// a fresh 256 KiB buffer per read, which was most of a shard's page faults at moderate
/// rates, where a read brings a few kilobytes.
const MIN_READ_ROOM_BYTES: usize = 32 << 10;

/// What a request handler answers with: a response header and its payload.
pub struct Response<H> {
    /// The response header.
    pub header: H,
    /// The payload (stored records, for a pull); empty for most responses.
    pub payload: Vec<u8>,
}

impl<H> Response<H> {
    /// A response with no payload.
    pub fn header(header: H) -> Response<H> {
        Response {
            header,
            payload: Vec::new(),
        }
    }
}

/// The state request tasks share with the connection's writer.
pub struct Connection {
    /// Identifies the connection to the client registry.
    pub key: ConnectionKey,
    /// The peer, for logs.
    pub peer: Option<SocketAddr>,
    outbox: RefCell<Outbox>,
    outbox_changed: Signal,
    in_flight: Cell<usize>,
    in_flight_changed: Signal,
    reading_done: Cell<bool>,
    broken: Cell<bool>,
    /// Set once the client sent a heartbeat: its close is reported to shard 0.
    pub heartbeated: Cell<bool>,
}

impl Connection {
    /// Encodes the answer to `request` into the outbox (nothing for a one-way request).
    pub fn respond<H: WireHeader>(
        &self,
        shard: &Shard,
        request: &Envelope,
        result: Result<Response<H>, Refusal>,
    ) {
        if request.kind() == FrameKind::OneWay {
            if let Err(refusal) = result {
                tracing::debug!(%refusal, "one-way request refused");
            }
            return;
        }
        let mut outbox = self.outbox.borrow_mut();
        let encoded = match result {
            Ok(response) => {
                let encoded = shard.encoder.encode_head(
                    &mut outbox.encoding,
                    request.response(ErrorCode::Ok),
                    &response.header,
                    &response.payload,
                );
                if encoded.is_ok() && !response.payload.is_empty() {
                    outbox.push_payload(Bytes::from(response.payload));
                }
                encoded
            }
            Err(refusal) => shard.encoder.encode_error(
                &mut outbox.encoding,
                *request,
                refusal.code,
                &refusal.message,
            ),
        };
        if let Err(error) = encoded {
            // Too large for a frame, or a header that does not fit its opcode: a bug or a
            // limit, answered as such rather than dropped.
            tracing::warn!(%error, opcode = request.opcode_number(), "could not encode a response");
            let _ = shard.encoder.encode_error(
                &mut outbox.encoding,
                *request,
                ErrorCode::Internal,
                &format!("the response could not be encoded: {error}"),
            );
        }
        drop(outbox);
        self.outbox_changed.notify();
    }

    fn break_with(&self, shard: &Shard, error: &WireError) {
        let code = error.error_code();
        let _ = shard.encoder.encode_connection_error(
            &mut self.outbox.borrow_mut().encoding,
            code,
            &error.to_string(),
        );
        self.broken.set(true);
        self.outbox_changed.notify();
    }
}

/// Answers waiting for the writer, in order: encoded frames (every small answer, and the
/// head of a large one) and, after its head, a large answer's payload in its own buffer.
#[derive(Default)]
struct Outbox {
    ready: Vec<Bytes>,
    /// Frames encoded since the last payload.
    encoding: BytesMut,
}

impl Outbox {
    /// Queues `payload` right after what is encoded so far (its frame's head).
    fn push_payload(&mut self, payload: Bytes) {
        if !self.encoding.is_empty() {
            self.ready.push(self.encoding.split().freeze());
        }
        self.ready.push(payload);
    }

    /// Everything queued, in order.
    fn take(&mut self) -> Vec<Bytes> {
        let mut pending = std::mem::take(&mut self.ready);
        if !self.encoding.is_empty() {
            pending.push(self.encoding.split().freeze());
        }
        pending
    }
}

/// Serves one accepted connection until it ends (see the module docs), or until its first
/// request binds it to another shard, which then serves it.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    serve_from(
        shard,
        stream,
        None,
        BytesMut::with_capacity(READ_CHUNK_BYTES),
    )
    .await;
}

/// Serves a connection handed over by the shard that accepted it: its first request
/// (`first`, the `BindShard` that moved it) and the bytes read after it come along.
pub async fn serve_handed(shard: Rc<Shard>, socket: OwnedFd, first: Frame, input: BytesMut) {
    // SAFETY: the descriptor is an open TCP socket, owned here and nowhere else.
    let stream = unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) };
    if let Some(stream) = crate::server::admit(&shard, stream) {
        serve_from(shard, stream, Some(first), input).await;
    }
}

/// Serves `stream`, starting with `first` (a request already read, if any) and the bytes
/// in `input` (read but not yet decoded); hands it to another shard instead if its first
/// request asks for one (only when nothing was read before: `first` is `None`).
async fn serve_from(shard: Rc<Shard>, stream: TcpStream, first: Option<Frame>, input: BytesMut) {
    let _counted = shard.connection_opened();
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let socket = stream.as_raw_fd();
    let connection = Rc::new(Connection {
        key: ConnectionKey {
            shard: shard.id.0,
            serial: shard.next_connection_serial(),
        },
        peer,
        outbox: RefCell::new(Outbox::default()),
        outbox_changed: Signal::default(),
        in_flight: Cell::new(0),
        in_flight_changed: Signal::default(),
        reading_done: Cell::new(false),
        broken: Cell::new(false),
        heartbeated: Cell::new(false),
    });
    tracing::debug!(?peer, shard = shard.id.0, "connection opened");
    let (reader, writer) = futures_lite::io::split(stream);
    let writer = glommio::spawn_local(write_answers(connection.clone(), writer));
    // A handed-over connection has had its first request read already: it may not move
    // again.
    let may_move = first.is_none();
    if let Some(first) = first {
        start_request(&shard, &connection, first);
    }
    let (stream, moving) = read_requests(&shard, &connection, reader, input, may_move).await;
    // The socket outlives this shard's halves of it: they close their descriptor only.
    // SAFETY: `socket` is the stream's descriptor, open until `stream` drops below.
    let moving = moving.and_then(|(target, frame, input)| {
        match unsafe { BorrowedFd::borrow_raw(socket) }.try_clone_to_owned() {
            Ok(copy) => Some((target, copy, frame, input)),
            Err(error) => {
                tracing::warn!(?peer, %error, "could not hand a connection to its shard");
                None
            }
        }
    });
    connection.reading_done.set(true);
    connection.outbox_changed.notify();
    // Every request finishes (answered if the socket still takes it) before the socket goes.
    while connection.in_flight.get() > 0 {
        connection.in_flight_changed.changed().await;
    }
    connection.outbox_changed.notify();
    // Dropping both halves closes the socket.
    drop(writer.await);
    drop(stream);
    if connection.heartbeated.get() {
        let key = connection.key;
        shard.post_to(spillway_wire::ShardId(0), move |shard| async move {
            crate::handlers::clients::connection_closed(&shard, key);
        });
    }
    if let Some((target, socket, frame, input)) = moving {
        tracing::debug!(
            ?peer,
            shard = shard.id.0,
            target = target.0,
            "connection handed over"
        );
        let handed = shard
            .post_to_waiting(target, move |shard| {
                serve_handed(shard, socket, frame, input)
            })
            .await;
        if !handed {
            tracing::debug!(
                ?peer,
                target = target.0,
                "target shard stopped: connection closed"
            );
        }
        return;
    }
    tracing::debug!(?peer, shard = shard.id.0, "connection closed");
}

/// A connection's move to another shard: the shard, the `BindShard` frame that asked for
/// it, and the bytes read after that frame.
type Moving = (spillway_wire::ShardId, Frame, BytesMut);

/// Reads and dispatches frames until the peer closes, the stream breaks, or shutdown; or,
/// when the connection `may_move`, until its first frame binds it to another shard.
async fn read_requests(
    shard: &Rc<Shard>,
    connection: &Rc<Connection>,
    mut reader: ReadHalf<TcpStream>,
    mut input: BytesMut,
    mut may_move: bool,
) -> (ReadHalf<TcpStream>, Option<Moving>) {
    let decoder = FrameDecoder::with_max_frame_bytes(shard.config.limits.max_frame_bytes);
    let limit = shard.config.limits.max_in_flight_requests_per_connection;
    loop {
        // Decode everything already read before reading more.
        loop {
            if connection.in_flight.get() >= limit {
                connection.in_flight_changed.changed().await;
                continue;
            }
            match decoder.decode(&mut input) {
                Ok(Some(frame)) => {
                    if std::mem::take(&mut may_move) {
                        if let Some(target) = bind_shard::move_to(shard, &frame) {
                            return (reader, Some((target, frame, input)));
                        }
                    }
                    start_request(shard, connection, frame);
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(peer = ?connection.peer, %error, "unreadable stream, closing the connection");
                    connection.break_with(shard, &error);
                    return (reader, None);
                }
            }
        }
        if shard.is_shutting_down() || connection.broken.get() {
            return (reader, None);
        }
        if input.capacity() - input.len() < MIN_READ_ROOM_BYTES {
            input.reserve(READ_CHUNK_BYTES);
        }
        let read = {
            let spare = input.spare_capacity_mut();
            // SAFETY: the bytes are only read after `read` reports them written, and
            // `set_len` below covers exactly those.
            let spare = unsafe {
                std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), spare.len())
            };
            let shutdown = async {
                shard.shutdown.changed().await;
                Ok(usize::MAX)
            };
            futures_lite::future::or(reader.read(spare), shutdown).await
        };
        match read {
            Ok(0) => {
                tracing::debug!(peer = ?connection.peer, "connection closed by peer");
                return (reader, None);
            }
            Ok(usize::MAX) => return (reader, None),
            Ok(read) => {
                // SAFETY: `read` bytes of the spare capacity were just written by the socket.
                unsafe { input.set_len(input.len() + read) };
            }
            Err(error) => {
                tracing::debug!(peer = ?connection.peer, %error, "connection read failed");
                return (reader, None);
            }
        }
    }
}

/// Runs one request as its own task, counted on the connection and the shard.
fn start_request(shard: &Rc<Shard>, connection: &Rc<Connection>, frame: Frame) {
    if frame.kind() == FrameKind::Response {
        tracing::debug!(
            opcode = frame.envelope().opcode_number(),
            "ignoring a response frame sent to the broker"
        );
        return;
    }
    connection.in_flight.set(connection.in_flight.get() + 1);
    let shard_guard = shard.request_started();
    let shard = shard.clone();
    let connection = connection.clone();
    glommio::spawn_local(async move {
        dispatch::dispatch(&shard, &connection, frame).await;
        connection.in_flight.set(connection.in_flight.get() - 1);
        connection.in_flight_changed.notify();
        drop(shard_guard);
    })
    .detach();
}

/// Writes the outbox whenever it holds something; returns the write half once reading is
/// over and everything is written, or `None` if the socket failed.
async fn write_answers(
    connection: Rc<Connection>,
    mut writer: WriteHalf<TcpStream>,
) -> Option<WriteHalf<TcpStream>> {
    loop {
        let pending = connection.outbox.borrow_mut().take();
        if pending.is_empty() {
            let finished = connection.reading_done.get() && connection.in_flight.get() == 0;
            if finished || connection.broken.get() {
                let _ = writer.flush().await;
                return Some(writer);
            }
            connection.outbox_changed.changed().await;
            continue;
        }
        for piece in pending {
            if let Err(error) = writer.write_all(&piece).await {
                tracing::debug!(peer = ?connection.peer, %error, "connection write failed");
                return None;
            }
        }
    }
}
