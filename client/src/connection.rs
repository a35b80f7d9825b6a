//! One TCP connection to a broker or name server, shared by every producer, consumer and
//! admin handle of a client, with many requests in flight matched by request id; and the
//! [`ConnectionPool`] that keeps one per address and replaces a broken one on next use.
//!
//! # Shape
//!
//! Two plain threads per connection and std blocking sockets, so the client imposes no
//! runtime: the *writer* connects (callers never block on a connect), then writes what
//! callers could not write themselves (see [`crate::outbox`]: a frame that finds the
//! socket idle is written on the caller's thread without waiting, the rest queue for the
//! writer, which writes everything queued in one vectored write); the *reader* decodes
//! responses and completes each request's [`Reply`]: a `flume::bounded(1)` oneshot that a
//! blocking caller `recv`s and an async caller `recv_async`s, or a callback (the
//! producer's sender thread uses one to hear about its requests on its own event channel).
//!
//! Frames are encoded on the caller's thread ([`Connection::send`]), so header encoding
//! and the frame CRC spread over the callers.
//!
//! # Failure
//!
//! A socket error, an unreadable stream, a connection-level error frame from the peer, or
//! a request past its deadline breaks the connection: every request pending on it fails
//! at once with a typed error (the timed-out one with [`ClientError::Timeout`], the others
//! with [`ClientError::Disconnected`]), the socket is shut down, and the pool opens a new
//! connection on next use. A request is answered exactly once: either
//! [`Connection::send`] returns an error and never calls its reply, or the reply is
//! called once, with the answer or the failure.
//!
//! # Limits
//!
//! Requests in flight per connection ([`Budget`] permits: callers wait, blocking or async,
//! when full), the frame size (encoder and decoder), frames and bytes per write.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use spillway_wire::message::{BindShardRequest, BindShardResponse};
use spillway_wire::{
    Envelope, ErrorCode, Frame, FrameDecoder, FrameEncoder, FrameKind, RequestId, ShardId,
    WireHeader,
};

use crate::budget::{Budget, Permit};
use crate::error::{ClientError, Result};
use crate::outbox::{self, Outbox, Outgoing, WriterSide};

/// How often the reader looks for requests past their deadline.
pub const DEADLINE_SCAN_INTERVAL: Duration = Duration::from_millis(50);
/// How long a broker may take to answer `BindShard` once connected (the answer only
/// waits for the socket to reach its shard).
pub const BIND_SHARD_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes the reader asks the socket for at least, per read.
pub const MIN_READ_BYTES: usize = 64 << 10;
/// Bytes the reader asks the socket for at most, per read (a larger frame takes several).
pub const MAX_READ_BYTES: usize = 4 << 20;

/// What a connection needs to know of the client's configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) max_frame_bytes: usize,
    pub(crate) max_in_flight_requests: usize,
}

/// A callback completing a request, run on the connection's reader thread (or on the
/// thread that breaks the connection): it must be quick and must not block.
pub(crate) type ReplyCallback = Box<dyn FnOnce(Result<Frame>) + Send>;

/// How a request's answer reaches its caller.
pub(crate) enum Reply {
    /// A oneshot channel (`flume::bounded(1)`): the caller waits with `recv` or
    /// `recv_async`.
    Oneshot(flume::Sender<Result<Frame>>),
    /// A callback, for callers that gather answers on their own channel.
    Callback(ReplyCallback),
}

impl Reply {
    fn complete(self, result: Result<Frame>) {
        match self {
            // The caller may have given up waiting (dropped its future): nothing to do.
            Reply::Oneshot(sender) => drop(sender.send(result)),
            Reply::Callback(callback) => callback(result),
        }
    }
}

/// A request waiting for its answer.
struct Pending {
    deadline: Instant,
    timeout: Duration,
    reply: Reply,
    /// Its place among the connection's requests in flight, given back with the answer.
    _permit: Permit,
}

/// The requests in flight, and why the connection broke once it has.
#[derive(Default)]
struct PendingTable {
    requests: HashMap<u64, Pending>,
    failure: Option<ClientError>,
}

/// What the caller side, the writer and the reader share.
struct Shared {
    address: Arc<str>,
    table: Mutex<PendingTable>,
    broken: AtomicBool,
    /// A handle on the socket once connected, so any thread can shut it down.
    socket: Mutex<Option<TcpStream>>,
}

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, PendingTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Breaks the connection: later sends fail with `error`, every pending request is
    /// failed with it, and the socket is shut down (which stops the reader and writer).
    fn fail_all(&self, error: ClientError) {
        let pending: Vec<Pending> = {
            let mut table = self.table();
            if table.failure.is_none() {
                table.failure = Some(error.clone());
            }
            self.broken.store(true, Ordering::SeqCst);
            table.requests.drain().map(|(_, pending)| pending).collect()
        };
        if let Some(socket) = self
            .socket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = socket.shutdown(Shutdown::Both);
        }
        if !pending.is_empty() {
            tracing::debug!(address = %self.address, %error, failed = pending.len(), "connection broken");
        }
        for request in pending {
            request.reply.complete(Err(error.clone()));
        }
    }

    /// Completes request `id` (if still pending: a late answer to a timed-out request is
    /// dropped).
    fn complete(&self, id: u64, result: Result<Frame>) {
        let pending = self.table().requests.remove(&id);
        if let Some(Pending {
            reply,
            _permit: permit,
            ..
        }) = pending
        {
            // The place is free before the caller sees the answer.
            drop(permit);
            reply.complete(result);
        }
    }

    /// Fails the requests past their deadline with [`ClientError::Timeout`], then breaks
    /// the connection: a peer that does not answer in time is not trusted with more.
    fn expire(&self, now: Instant) {
        let expired: Vec<Pending> = {
            let mut table = self.table();
            let ids: Vec<u64> = table
                .requests
                .iter()
                .filter(|(_, pending)| pending.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| table.requests.remove(id))
                .collect()
        };
        let Some(first) = expired.first() else {
            return;
        };
        let timeout = first.timeout;
        // Broken first, answered second: a caller woken by its timeout finds the
        // connection already broken (and cannot send on it again in between).
        self.fail_all(ClientError::Disconnected {
            address: self.address.to_string(),
            reason: format!("closed after a request got no answer within {timeout:?}"),
        });
        for request in expired {
            let error = ClientError::Timeout {
                address: self.address.to_string(),
                timeout: request.timeout,
            };
            request.reply.complete(Err(error));
        }
    }
}

/// One connection to one address (see the module docs).
pub(crate) struct Connection {
    shared: Arc<Shared>,
    outbox: Outbox,
    permits: Arc<Budget>,
    next_request_id: AtomicU64,
    encoder: FrameEncoder,
}

impl Connection {
    /// Starts connecting to `address` (`host:port`) on a new writer thread and returns at
    /// once; requests sent meanwhile go out once connected (or fail if it cannot connect).
    /// With `shard`, the connection's first request binds it to that shard of the broker
    /// (`BindShard`), so requests for that shard's queues skip the broker's cross-shard hop.
    pub(crate) fn open(
        address: &str,
        settings: ConnectionSettings,
        shard: Option<u16>,
    ) -> Arc<Connection> {
        let shared = Arc::new(Shared {
            address: Arc::from(address),
            table: Mutex::new(PendingTable::default()),
            broken: AtomicBool::new(false),
            socket: Mutex::new(None),
        });
        let (outbox, writer_side) = outbox::outbox();
        let connection = Arc::new(Connection {
            shared: shared.clone(),
            outbox,
            permits: Arc::new(Budget::new(settings.max_in_flight_requests)),
            next_request_id: AtomicU64::new(1),
            encoder: FrameEncoder::with_max_frame_bytes(settings.max_frame_bytes),
        });
        if let Err(reason) = check_address(address) {
            // Nothing to connect to: broken from the start, no thread.
            shared.fail_all(ClientError::io(
                address,
                io::Error::new(io::ErrorKind::InvalidInput, reason),
            ));
            return connection;
        }
        let spawned = std::thread::Builder::new()
            .name(format!("spillway-write {address}"))
            .spawn({
                let shared = shared.clone();
                move || run_writer(shared, writer_side, settings)
            });
        if let Err(error) = spawned {
            shared.fail_all(ClientError::io(address, error));
        }
        if let Some(shard) = shard {
            connection.bind_shard(shard, settings.connect_timeout + BIND_SHARD_ANSWER_TIMEOUT);
        }
        connection
    }

    /// Sends `BindShard` as the connection's first request. Requests may follow at once:
    /// the broker moves them along with the socket. A refusal (a route that names more
    /// shards than the broker has) is only logged: every shard serves every queue, the
    /// bound one only sooner.
    fn bind_shard(&self, shard: u16, timeout: Duration) {
        let Some(permit) = self.try_permit() else {
            return;
        };
        let address = self.shared.address.clone();
        let reply = Reply::Callback(Box::new(move |result: Result<Frame>| {
            let bound = result.and_then(|frame| {
                decode_response::<BindShardResponse>(&frame, &address, "bind to a shard")
            });
            if let Err(error) = bound {
                tracing::debug!(%address, shard, %error, "connection not bound to its shard");
            }
        }));
        let request = BindShardRequest {
            shard: ShardId(shard),
        };
        if let Err(error) = self.send(&request, Vec::new(), timeout, reply, permit) {
            tracing::debug!(address = %self.shared.address, shard, %error, "could not bind a connection");
        }
    }

    /// The peer's address as configured.
    pub(crate) fn address(&self) -> &str {
        &self.shared.address
    }

    /// Whether the connection has broken (a new one is needed).
    pub(crate) fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::SeqCst)
    }

    /// A place among the requests in flight, if one is free now.
    pub(crate) fn try_permit(&self) -> Option<Permit> {
        Permit::try_take(&self.permits, 1)
    }

    /// A place among the requests in flight, waiting (as a future) for one.
    pub(crate) async fn permit(&self) -> Permit {
        Permit::take(&self.permits, 1).await
    }

    /// Encodes a request on this thread and writes it (or queues it for the writer, see
    /// [`crate::outbox`]); `reply` gets the answer (or the failure) once. Returns an error,
    /// without calling `reply`, if the request cannot be encoded or the connection has
    /// already broken.
    pub(crate) fn send<H: WireHeader>(
        &self,
        header: &H,
        payload: Vec<Bytes>,
        timeout: Duration,
        reply: Reply,
        permit: Permit,
    ) -> Result<()> {
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let mut head = BytesMut::new();
        let pieces: Vec<&[u8]> = payload.iter().map(|piece| &piece[..]).collect();
        self.encoder.encode_head_of_pieces(
            &mut head,
            Envelope::request(H::OPCODE, RequestId(id)),
            header,
            &pieces,
        )?;
        {
            let mut table = self.shared.table();
            if let Some(failure) = &table.failure {
                return Err(failure.clone());
            }
            table.requests.insert(
                id,
                Pending {
                    deadline: Instant::now() + timeout,
                    timeout,
                    reply,
                    _permit: permit,
                },
            );
        }
        let frame = Outgoing {
            head: head.freeze(),
            payload,
        };
        if let Err(error) = self.outbox.send(frame) {
            // Breaking the connection answers this request too, with the failure.
            self.shared
                .fail_all(ClientError::io(&self.shared.address, error));
        }
        Ok(())
    }

    /// Sends a request and waits (as a future) for its answer frame, which may be an error
    /// response: see [`check_response`].
    pub(crate) async fn call<H: WireHeader + Sync>(
        &self,
        header: &H,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Frame> {
        let permit = self.permit().await;
        let (reply, answer) = flume::bounded(1);
        let pieces = if payload.is_empty() {
            Vec::new()
        } else {
            vec![payload]
        };
        self.send(header, pieces, timeout, Reply::Oneshot(reply), permit)?;
        answer
            .recv_async()
            .await
            .map_err(|_| ClientError::Disconnected {
                address: self.address().to_owned(),
                reason: "the connection dropped the request".into(),
            })?
    }
}

/// Checks a response frame's error code: `Ok` if the request succeeded, else the peer's
/// refusal as a [`ClientError`] (prefixed with `what` and the address).
pub(crate) fn check_response(frame: &Frame, address: &str, what: &str) -> Result<()> {
    let detail = || {
        let message = frame
            .error_detail()
            .map(|detail| detail.message.to_string())
            .unwrap_or_else(|error| format!("(undecodable error detail: {error})"));
        format!("{what} at {address}: {message}")
    };
    match frame.error_code() {
        Ok(ErrorCode::Ok) => Ok(()),
        Ok(code) => Err(ClientError::Broker {
            code,
            message: detail(),
        }),
        Err(unknown) => Err(ClientError::UnknownErrorCode {
            code: unknown.0,
            message: detail(),
        }),
    }
}

/// Checks a response and deserializes its `R` header.
pub(crate) fn decode_response<R: WireHeader>(
    frame: &Frame,
    address: &str,
    what: &str,
) -> Result<R> {
    check_response(frame, address, what)?;
    Ok(frame.deserialize_header::<R>()?)
}

/// Keeps one connection per address and shard binding (unbound, or bound to one shard of
/// the broker there); a broken one is replaced on next use.
pub(crate) struct ConnectionPool {
    settings: ConnectionSettings,
    connections: Mutex<HashMap<PoolKey, Arc<Connection>>>,
}

/// A pooled connection's address and the broker shard it is bound to, if any.
type PoolKey = (String, Option<u16>);

impl ConnectionPool {
    pub(crate) fn new(settings: ConnectionSettings) -> ConnectionPool {
        ConnectionPool {
            settings,
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// The unbound connection to `address`, opening a new one if there is none or it
    /// broke. Never blocks on the network.
    pub(crate) fn get(&self, address: &str) -> Arc<Connection> {
        self.get_bound(address, None)
    }

    /// The connection to `address` bound to `shard` (`None`: unbound, served by whichever
    /// shard accepted it), opening a new one if there is none or it broke. Never blocks on
    /// the network.
    pub(crate) fn get_bound(&self, address: &str, shard: Option<u16>) -> Arc<Connection> {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (address.to_owned(), shard);
        if let Some(connection) = connections.get(&key) {
            if !connection.is_broken() {
                return connection.clone();
            }
        }
        let connection = Connection::open(address, self.settings, shard);
        connections.insert(key, connection.clone());
        connection
    }
}

/// Checks that `address` has the shape `host:port` with a port one can connect to, without
/// resolving the host (which may block). A route naming anything else fails its requests at
/// once instead of after a connect attempt.
fn check_address(address: &str) -> std::result::Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("{address:?} is not host:port"));
    };
    if host.is_empty() {
        return Err(format!("{address:?} names no host"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err(format!(
            "{address:?} names port 0, which no server listens on"
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(format!("{address:?} has no valid port (1 to 65535)")),
    }
}

/// Resolves `address` and connects to the first resolved address that answers.
fn connect(address: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last_error = io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{address} resolves to no address"),
    );
    for resolved in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&resolved, timeout) {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

/// The writer thread: connect, start the reader, then write queued frames in bursts until
/// the connection breaks or every handle on it is gone.
fn run_writer(shared: Arc<Shared>, outbox: WriterSide, settings: ConnectionSettings) {
    let address = shared.address.clone();
    let connected = connect(&address, settings.connect_timeout).and_then(|stream| {
        stream.set_nodelay(true)?;
        let reader = stream.try_clone()?;
        let for_shutdown = stream.try_clone()?;
        outbox.connected(stream.try_clone()?);
        Ok((stream, reader, for_shutdown))
    });
    let (mut stream, reader, for_shutdown) = match connected {
        Ok(streams) => streams,
        Err(error) => {
            shared.fail_all(ClientError::io(&address, error));
            return;
        }
    };
    *shared.socket.lock().unwrap_or_else(PoisonError::into_inner) = Some(for_shutdown);
    if shared.broken.load(Ordering::SeqCst) {
        // Broken (or dropped) while connecting.
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let decoder = FrameDecoder::with_max_frame_bytes(settings.max_frame_bytes);
    let spawned = std::thread::Builder::new()
        .name(format!("spillway-read {address}"))
        .spawn({
            let shared = shared.clone();
            move || run_reader(shared, reader, decoder)
        });
    if let Err(error) = spawned {
        shared.fail_all(ClientError::io(&address, error));
        return;
    }
    tracing::debug!(%address, "connected");

    let mut burst: Vec<Outgoing> = Vec::with_capacity(outbox::MAX_WRITE_FRAMES);
    while outbox.next_burst(&mut burst).is_some() {
        if shared.broken.load(Ordering::SeqCst) {
            return;
        }
        if let Err(error) = outbox::write_burst(&mut stream, &burst) {
            shared.fail_all(ClientError::io(&address, error));
            return;
        }
        burst.clear();
    }
    // Every handle is gone: close.
    let _ = stream.shutdown(Shutdown::Both);
}

/// Reads at most `room` bytes from `stream` into `input`'s spare capacity, without zeroing
/// it first (zeroing a megabyte for every read that returned a few kilobytes was a tenth of
/// a consumer's reader thread).
fn read_into_spare(stream: &TcpStream, input: &mut BytesMut, room: usize) -> io::Result<usize> {
    input.reserve(room);
    let spare = input.spare_capacity_mut();
    let len = spare.len().min(room);
    // SAFETY: the kernel writes at most `len` bytes at the pointer, all within `input`'s
    // spare capacity, which nothing else borrows during the call.
    let read = unsafe { libc::read(stream.as_raw_fd(), spare.as_mut_ptr().cast(), len) };
    if read < 0 {
        return Err(io::Error::last_os_error());
    }
    let read = read as usize;
    // SAFETY: `read` bytes of the spare capacity were just written by the kernel.
    unsafe { input.set_len(input.len() + read) };
    Ok(read)
}

/// The reader thread: decode answers and complete their requests; look for expired
/// requests every [`DEADLINE_SCAN_INTERVAL`].
fn run_reader(shared: Arc<Shared>, stream: TcpStream, decoder: FrameDecoder) {
    let address = shared.address.clone();
    if let Err(error) = stream.set_read_timeout(Some(DEADLINE_SCAN_INTERVAL)) {
        shared.fail_all(ClientError::io(&address, error));
        return;
    }
    let mut input = BytesMut::with_capacity(MIN_READ_BYTES);
    let mut next_scan = Instant::now() + DEADLINE_SCAN_INTERVAL;
    loop {
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(frame)) => {
                    if !handle_frame(&shared, frame) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%address, %error, "unreadable stream from the peer");
                    shared.fail_all(ClientError::Disconnected {
                        address: address.to_string(),
                        reason: format!("unreadable stream: {error}"),
                    });
                    return;
                }
            }
        }
        if shared.broken.load(Ordering::SeqCst) {
            return;
        }
        // The decoder reserved room for the whole frame once it knew its length.
        let room = (input.capacity() - input.len()).clamp(MIN_READ_BYTES, MAX_READ_BYTES);
        match read_into_spare(&stream, &mut input, room) {
            Ok(0) => {
                shared.fail_all(ClientError::Disconnected {
                    address: address.to_string(),
                    reason: "closed by the peer".into(),
                });
                return;
            }
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(error) => {
                shared.fail_all(ClientError::io(&address, error));
                return;
            }
        }
        let now = Instant::now();
        if now >= next_scan {
            shared.expire(now);
            next_scan = now + DEADLINE_SCAN_INTERVAL;
        }
    }
}

/// Completes the request a frame answers; returns `false` once the connection is broken.
fn handle_frame(shared: &Shared, frame: Frame) -> bool {
    if frame.kind() != FrameKind::Response {
        tracing::debug!(address = %shared.address, kind = %frame.kind(), "ignoring a frame that is not a response");
        return true;
    }
    if frame.request_id() == RequestId::NONE {
        // A connection-level error: the peer could not read our stream and closes.
        let error = match check_response(&frame, &shared.address, "the connection") {
            Err(error) => error,
            Ok(()) => ClientError::bad_response(&shared.address, "a response with request id 0"),
        };
        shared.fail_all(error);
        return false;
    }
    shared.complete(frame.request_id().0, Ok(frame));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_wire::message::{ListTopicsRequest, ListTopicsResponse};
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn settings() -> ConnectionSettings {
        ConnectionSettings {
            connect_timeout: Duration::from_secs(5),
            max_frame_bytes: spillway_wire::DEFAULT_MAX_FRAME_BYTES,
            max_in_flight_requests: 16,
        }
    }

    /// A peer that answers each request it reads with `answer(frame)`, in reverse order of
    /// arrival per burst, so matching by id is exercised.
    fn fake_server(
        answer: impl Fn(&Frame, &mut BytesMut) + Send + 'static,
    ) -> (String, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let decoder = FrameDecoder::new();
            let mut input = BytesMut::new();
            let mut chunk = vec![0; 1 << 16];
            loop {
                let read = match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(read) => read,
                };
                input.extend_from_slice(&chunk[..read]);
                let mut frames = Vec::new();
                while let Some(frame) = decoder.decode(&mut input).unwrap() {
                    frames.push(frame);
                }
                let mut output = BytesMut::new();
                for frame in frames.iter().rev() {
                    answer(frame, &mut output);
                }
                if stream.write_all(&output).is_err() {
                    return;
                }
            }
        });
        (address, handle)
    }

    fn list_topics_answer(frame: &Frame, output: &mut BytesMut) {
        FrameEncoder::new()
            .encode(
                output,
                frame.envelope().response(ErrorCode::Ok),
                &ListTopicsResponse { topics: vec![] },
                &[],
            )
            .unwrap();
    }

    #[test]
    fn many_requests_in_flight_are_matched_by_id() {
        let (address, _server) = fake_server(list_topics_answer);
        let connection = Connection::open(&address, settings(), None);
        let answers: Vec<flume::Receiver<Result<Frame>>> = (0..10)
            .map(|_| {
                let (reply, answer) = flume::bounded(1);
                let permit = connection.try_permit().unwrap();
                connection
                    .send(
                        &ListTopicsRequest {},
                        Vec::new(),
                        Duration::from_secs(10),
                        Reply::Oneshot(reply),
                        permit,
                    )
                    .unwrap();
                answer
            })
            .collect();
        for answer in answers {
            let frame = answer
                .recv_timeout(Duration::from_secs(10))
                .unwrap()
                .unwrap();
            decode_response::<ListTopicsResponse>(&frame, &address, "list").unwrap();
        }
        // Every permit came back with its answer.
        assert_eq!(connection.permits.used(), 0);
    }

    #[test]
    fn frames_from_many_threads_arrive_whole_and_in_each_threads_order() {
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 256;
        const BODY: usize = 256 << 10;
        // 256 MiB from four threads at once, faster than the socket drains: a frame may go
        // directly from its caller or queue for the writer thread (see `outbox`, whose own
        // tests pin down each path); either way every frame arrives whole, and each
        // thread's frames in the order it sent them.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let decoder = FrameDecoder::new();
            let mut input = BytesMut::new();
            let mut chunk = vec![0; 1 << 16];
            let mut seen = Vec::new();
            while seen.len() < (THREADS * PER_THREAD) as usize {
                let read = stream.read(&mut chunk).unwrap();
                assert_ne!(read, 0, "closed early");
                input.extend_from_slice(&chunk[..read]);
                let mut output = BytesMut::new();
                while let Some(frame) = decoder.decode(&mut input).unwrap() {
                    let payload = frame.payload();
                    let id =
                        |at: usize| u64::from_le_bytes(payload[at..at + 8].try_into().unwrap());
                    let (thread, sequence) = (id(0), id(8));
                    let whole = payload.len() == 16 + BODY
                        && payload[16..]
                            .iter()
                            .all(|byte| *byte == (thread * 31 + sequence) as u8);
                    seen.push((thread, sequence, whole));
                    list_topics_answer(&frame, &mut output);
                }
                stream.write_all(&output).unwrap();
            }
            seen
        });
        let connection = Connection::open(
            &address,
            ConnectionSettings {
                max_in_flight_requests: (THREADS * PER_THREAD) as usize,
                ..settings()
            },
            None,
        );
        let start = std::sync::Barrier::new(THREADS as usize);
        let answers: Vec<flume::Receiver<Result<Frame>>> = std::thread::scope(|scope| {
            let senders: Vec<_> = (0..THREADS)
                .map(|thread| {
                    let (connection, start) = (&connection, &start);
                    scope.spawn(move || {
                        start.wait();
                        (0..PER_THREAD)
                            .map(|sequence| {
                                let mut id = BytesMut::new();
                                id.extend_from_slice(&thread.to_le_bytes());
                                id.extend_from_slice(&sequence.to_le_bytes());
                                let fill = (thread * 31 + sequence) as u8;
                                let body = Bytes::from(vec![fill; BODY]);
                                let (reply, answer) = flume::bounded(1);
                                let permit = connection.try_permit().unwrap();
                                connection
                                    .send(
                                        &ListTopicsRequest {},
                                        vec![id.freeze(), body],
                                        Duration::from_secs(30),
                                        Reply::Oneshot(reply),
                                        permit,
                                    )
                                    .unwrap();
                                answer
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            senders
                .into_iter()
                .flat_map(|sender| sender.join().unwrap())
                .collect()
        });
        for answer in answers {
            let frame = answer
                .recv_timeout(Duration::from_secs(30))
                .unwrap()
                .unwrap();
            decode_response::<ListTopicsResponse>(&frame, &address, "list").unwrap();
        }
        let seen = server.join().unwrap();
        assert!(seen.iter().all(|(_, _, whole)| *whole), "a torn frame");
        for thread in 0..THREADS {
            let order: Vec<u64> = seen
                .iter()
                .filter(|(from, _, _)| *from == thread)
                .map(|(_, sequence, _)| *sequence)
                .collect();
            assert_eq!(
                order,
                (0..PER_THREAD).collect::<Vec<_>>(),
                "thread {thread}"
            );
        }
    }

    #[test]
    fn silent_peer_times_out_and_breaks_the_connection() {
        let (address, _server) = fake_server(|_, _| {});
        let connection = Connection::open(&address, settings(), None);
        let result = futures_lite::future::block_on(connection.call(
            &ListTopicsRequest {},
            Bytes::new(),
            Duration::from_millis(100),
        ));
        assert!(
            matches!(result, Err(ClientError::Timeout { .. })),
            "{result:?}"
        );
        assert!(connection.is_broken());
        let again = futures_lite::future::block_on(connection.call(
            &ListTopicsRequest {},
            Bytes::new(),
            Duration::from_secs(1),
        ));
        assert!(
            matches!(again, Err(ClientError::Disconnected { .. })),
            "{again:?}"
        );
    }

    #[test]
    fn an_address_one_cannot_connect_to_breaks_the_connection_at_once() {
        for address in [
            "127.0.0.1:0",
            "127.0.0.1",
            ":9876",
            "host:port",
            "host:65536",
        ] {
            let connection = Connection::open(address, settings(), Some(0));
            assert!(connection.is_broken(), "{address}");
            let (reply, _answer) = flume::bounded(1);
            let permit = connection.try_permit().unwrap();
            let sent = connection.send(
                &ListTopicsRequest {},
                Vec::new(),
                Duration::from_secs(1),
                Reply::Oneshot(reply),
                permit,
            );
            assert!(
                matches!(&sent, Err(ClientError::Io { .. })),
                "{address}: {sent:?}"
            );
        }
        for address in ["127.0.0.1:1", "localhost:9876", "[::1]:9876"] {
            assert_eq!(check_address(address), Ok(()), "{address}");
        }
    }

    #[test]
    fn refused_connect_fails_the_pending_request_and_the_pool_reopens() {
        // Bind then drop: nothing listens on the port.
        let address = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let pool = ConnectionPool::new(settings());
        let connection = pool.get(&address);
        let result = futures_lite::future::block_on(connection.call(
            &ListTopicsRequest {},
            Bytes::new(),
            Duration::from_secs(5),
        ));
        assert!(matches!(result, Err(ClientError::Io { .. })), "{result:?}");
        assert!(result.unwrap_err().is_retriable());
        assert!(connection.is_broken());
        assert!(!Arc::ptr_eq(&connection, &pool.get(&address)));
    }

    #[test]
    fn a_bound_connection_sends_bind_shard_first_and_the_pool_keeps_it_apart() {
        let (seen, heard) = flume::unbounded();
        let (address, _server) = fake_server(move |frame, output| {
            let opcode = frame.opcode().unwrap();
            if opcode != spillway_wire::Opcode::BindShard {
                seen.send((frame.request_id().0, opcode, None)).unwrap();
                return list_topics_answer(frame, output);
            }
            let shard = frame
                .header::<BindShardRequest>()
                .unwrap()
                .shard
                .0
                .to_native();
            seen.send((frame.request_id().0, opcode, Some(shard)))
                .unwrap();
            FrameEncoder::new()
                .encode(
                    output,
                    frame.envelope().response(ErrorCode::Ok),
                    &BindShardResponse {
                        shard: ShardId(shard),
                    },
                    &[],
                )
                .unwrap();
        });
        let pool = ConnectionPool::new(settings());
        let bound = pool.get_bound(&address, Some(1));
        assert!(Arc::ptr_eq(&bound, &pool.get_bound(&address, Some(1))));
        let answer = futures_lite::future::block_on(bound.call(
            &ListTopicsRequest {},
            Bytes::new(),
            Duration::from_secs(5),
        ));
        assert!(answer.is_ok(), "{answer:?}");
        // The fake server may see both in one read (and answers a read's frames last
        // first); the bind went first: ids follow the order frames reach the writer, which
        // writes them in that order.
        let mut frames = vec![heard.recv().unwrap(), heard.recv().unwrap()];
        frames.sort_unstable_by_key(|(request_id, _, _)| *request_id);
        assert_eq!(
            frames,
            [
                (1, spillway_wire::Opcode::BindShard, Some(1)),
                (2, spillway_wire::Opcode::ListTopics, None)
            ]
        );
        // Unbound, or bound to another shard: other connections.
        assert!(!Arc::ptr_eq(&bound, &pool.get(&address)));
        assert!(!Arc::ptr_eq(&bound, &pool.get_bound(&address, Some(0))));
    }
}
