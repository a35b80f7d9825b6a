//! Starting and stopping the broker: one thread per shard, each running a glommio executor
//! (pinned to its core when the config lists cores), and the main thread that starts them,
//! announces the broker, waits for a signal and stops them in order.
//!
//! # Start
//!
//! The main thread loads the topic table, binds one SO_REUSEPORT socket per shard
//! ([`crate::listener`]) and wires the shards together (one bounded job channel each). Each
//! shard opens its storage (recovering it if needed) and its consumer offsets, adopts its
//! socket and starts accepting; shard 0 also starts registration with the name servers and
//! client expiry. Once every shard reports ready, the main thread prints
//! `listening on ADDR` on stdout — the line scripts and tests wait for. A shard that cannot
//! start (data directory, damaged log) fails the whole start with its reason.
//!
//! # Stop (SIGTERM or SIGINT)
//!
//! Two phases, because a request on one shard may still need another shard's store:
//!
//! 1. **Drain**, every shard: shard 0 unregisters from the name servers (clients stop
//!    routing here), every shard stops accepting and reading, waiting pulls answer at once,
//!    and in-flight requests finish and are answered.
//! 2. **Close**, once every shard has drained: each shard flushes and closes its consumer
//!    offsets and its store (final fdatasync, index files, clean checkpoint).
//!
//! Then the process exits 0. A second signal during the stop exits at once with status
//! 130; nothing acknowledged is lost either way (acknowledged data is already durable).

use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use spillway_storage::ShardStore;
use spillway_wire::{ErrorCode, ShardId};

use crate::config::BrokerConfig;
use crate::consumer_offsets::ConsumerOffsetStore;
use crate::listener::Listeners;
use crate::registration::{BrokerIdentity, Registration, RegistrationSettings, TopicSource};
use crate::shard::{self, Job, Shard, ShardParts, JOB_CHANNEL_CAPACITY};
use crate::topic_table::TopicTable;

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY_MS: u64 = 100;

/// Why the broker did not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The topic table could not be loaded.
    #[error("{0}")]
    Topics(#[from] crate::topic_table::TopicTableError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The configured address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A shard thread could not be started.
    #[error("cannot start shard {shard}: {reason}")]
    Spawn {
        /// Which shard.
        shard: u16,
        /// Why.
        reason: String,
    },
    /// A shard failed to open its storage or stopped with an error.
    #[error("shard {shard}: {reason}")]
    Shard {
        /// Which shard.
        shard: u16,
        /// Why.
        reason: String,
    },
}

/// What shard threads and the signal thread tell the main thread.
enum Event {
    Ready(u16),
    Failed(u16, String),
    Drained(u16),
    Closed(u16, Result<(), String>),
    Signal(i32),
}

/// What the main thread tells a shard.
enum Control {
    Drain,
    Close,
}

/// Runs the broker until SIGTERM/SIGINT; returns once every shard has stopped.
pub fn run(config: BrokerConfig) -> Result<(), ServerError> {
    let config = Arc::new(config);
    let shard_count = config.shard_count();
    let topics = TopicTable::load(&config)?;
    let listeners =
        Listeners::bind(config.listen_address, usize::from(shard_count)).map_err(|source| {
            ServerError::Bind {
                address: config.listen_address,
                source,
            }
        })?;
    let address = listeners.address;
    let advertised = match &config.advertised_address {
        Some(endpoint) => endpoint.to_string(),
        None => address.to_string(),
    };
    let identity = BrokerIdentity::from_config(&config, advertised.clone());

    let (events, event_receiver) = flume::unbounded();
    forward_signals(events.clone())?;
    let (job_senders, job_receivers): (Vec<_>, Vec<_>) = (0..shard_count)
        .map(|_| flume::bounded::<Job>(JOB_CHANNEL_CAPACITY))
        .unzip();
    let mut controls = Vec::new();
    let mut threads = Vec::new();
    for ((shard, jobs), fd) in (0..shard_count)
        .zip(job_receivers)
        .zip(listeners.into_raw_fds())
    {
        let (control, control_receiver) = flume::unbounded();
        controls.push(control);
        let parts = ShardParts {
            id: ShardId(shard),
            config: config.clone(),
            topics: topics.clone(),
            peers: job_senders.clone(),
        };
        let placement = match config.shard_core(spillway_storage::ShardId(shard)) {
            Some(core) => Placement::Fixed(core),
            None => Placement::Unbound,
        };
        let events = events.clone();
        let identity = identity.clone();
        let thread = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{shard}"))
            .spawn(move || async move {
                run_shard(parts, jobs, fd, control_receiver, events.clone(), identity).await;
            })
            .map_err(|error| ServerError::Spawn {
                shard,
                reason: error.to_string(),
            })?;
        threads.push(thread);
    }
    drop(job_senders);

    let mut ready = 0;
    let mut failure = None;
    while ready + usize::from(failure.is_some()) < usize::from(shard_count) {
        match event_receiver.recv() {
            Ok(Event::Ready(shard)) => {
                tracing::debug!(shard, "shard ready");
                ready += 1;
            }
            Ok(Event::Failed(shard, reason)) => {
                tracing::error!(shard, %reason, "shard failed to start");
                failure = Some(ServerError::Shard { shard, reason });
                break;
            }
            Ok(Event::Signal(signal)) => {
                tracing::info!(signal, "signal during start, stopping");
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if failure.is_none() && ready == usize::from(shard_count) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on {address}");
        let _ = stdout.flush();
        tracing::info!(%address, advertised, shards = shard_count, "broker serving");
        loop {
            match event_receiver.recv() {
                Ok(Event::Signal(signal)) => {
                    tracing::info!(signal, "stopping: draining requests");
                    break;
                }
                Ok(Event::Failed(shard, reason)) => {
                    tracing::error!(shard, %reason, "shard failed, stopping the broker");
                    failure = Some(ServerError::Shard { shard, reason });
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    // A shard that failed has already ended; every other one gets the stop.
    let alive = usize::from(shard_count) - usize::from(failure.is_some());
    let stopped = stop(&controls, alive, &event_receiver);
    for thread in threads {
        if thread.join().is_err() {
            tracing::error!("a shard thread panicked");
        }
    }
    match (failure, stopped) {
        (Some(failure), _) => Err(failure),
        (None, result) => result,
    }
}

/// Drains every shard, then closes every shard (see the module docs).
fn stop(
    controls: &[flume::Sender<Control>],
    count: usize,
    events: &flume::Receiver<Event>,
) -> Result<(), ServerError> {
    for control in controls {
        let _ = control.send(Control::Drain);
    }
    let mut drained = 0;
    while drained < count {
        match events.recv() {
            Ok(Event::Drained(shard)) => {
                tracing::debug!(shard, "shard drained");
                drained += 1;
            }
            Ok(Event::Failed(..)) => drained += 1,
            Ok(Event::Signal(_)) => {
                tracing::warn!("second signal: exiting without waiting for requests");
                std::process::exit(130);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    tracing::info!("all shards drained, closing stores");
    for control in controls {
        let _ = control.send(Control::Close);
    }
    let mut result = Ok(());
    let mut closed = 0;
    while closed < count {
        match events.recv() {
            Ok(Event::Closed(shard, outcome)) => {
                closed += 1;
                if let Err(reason) = outcome {
                    tracing::error!(shard, %reason, "shard did not close cleanly");
                    result = Err(ServerError::Shard { shard, reason });
                }
            }
            Ok(Event::Failed(..)) => closed += 1,
            Ok(Event::Signal(_)) => {
                tracing::warn!("second signal: exiting without closing the stores");
                std::process::exit(130);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    result
}

/// Forwards SIGTERM and SIGINT to the main thread's event channel.
fn forward_signals(events: flume::Sender<Event>) -> Result<(), ServerError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(|error| {
        ServerError::Spawn {
            shard: 0,
            reason: format!("cannot install signal handlers: {error}"),
        }
    })?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if events.send(Event::Signal(signal)).is_err() {
                    return;
                }
            }
        })
        .map_err(|error| ServerError::Spawn {
            shard: 0,
            reason: format!("cannot start the signal thread: {error}"),
        })?;
    Ok(())
}

/// One shard's whole life: open, serve, drain, close.
async fn run_shard(
    parts: ShardParts,
    jobs: flume::Receiver<Job>,
    listener_fd: RawFd,
    control: flume::Receiver<Control>,
    events: flume::Sender<Event>,
    identity: BrokerIdentity,
) {
    let id = parts.id.0;
    // SAFETY: the descriptor is a bound, listening socket created for this shard alone by
    // `Listeners::bind`; nothing else owns or closes it.
    let listener = unsafe { TcpListener::from_raw_fd(listener_fd) };
    let shard = match open_shard(parts).await {
        Ok(shard) => Rc::new(shard),
        Err(reason) => {
            let _ = events.send(Event::Failed(id, reason));
            return;
        }
    };
    let receiving = glommio::spawn_local(shard::receive_jobs(shard.clone(), jobs));
    let accepting = glommio::spawn_local(accept_connections(shard.clone(), listener));
    let logging_stats = glommio::spawn_local(crate::request_stats::log_periodically(shard.clone()));
    let mut background = Vec::new();
    let mut registration = None;
    if id == 0 {
        background.push(glommio::spawn_local(
            crate::handlers::clients::expire_clients(shard.clone()),
        ));
        let topics: Rc<dyn TopicSource> = shard.clone();
        let registering = Registration::new(
            Rc::new(identity),
            RegistrationSettings::from_config(&shard.config),
            topics,
        );
        background.push(glommio::spawn_local(registering.clone().run()));
        background.push(glommio::spawn_local(announce_topic_changes(
            shard.clone(),
            registering.clone(),
        )));
        registration = Some(registering);
    }
    let _ = events.send(Event::Ready(id));

    if let Ok(Control::Drain) = control.recv_async().await {
        if let Some(registration) = registration {
            // Clients stop routing here before anything stops answering.
            registration.stop();
            drop(background);
            let told = registration.unregister_all().await;
            tracing::info!(name_servers = told, "unregistered");
        }
        drop(accepting);
        drop(logging_stats);
        shard.begin_shutdown();
        shard.drained().await;
        let _ = events.send(Event::Drained(id));
        // Other shards may still need this one's store until they have drained too.
        let _ = control.recv_async().await;
    }
    drop(receiving);
    let outcome = close_shard(&shard).await;
    let _ = events.send(Event::Closed(id, outcome));
}

/// Shard 0: every topic change triggers a registration with the new topic set.
async fn announce_topic_changes(shard: Rc<Shard>, registration: Rc<Registration>) {
    loop {
        shard.topics_changed.changed().await;
        registration.topics_changed();
    }
}

impl TopicSource for Shard {
    fn topics_version(&self) -> u64 {
        self.topics.borrow().version()
    }

    fn topics(&self) -> (u64, Vec<spillway_wire::message::TopicConfig>) {
        let topics = self.topics.borrow();
        (topics.version(), topics.wire_topics())
    }
}

/// Opens the shard's storage and consumer offsets.
async fn open_shard(parts: ShardParts) -> Result<Shard, String> {
    let storage_config = parts
        .config
        .storage_config(spillway_storage::ShardId(parts.id.0));
    let shard_dir = std::path::absolute(storage_config.shard_dir())
        .map_err(|error| format!("cannot resolve the data directory: {error}"))?;
    let store = ShardStore::open(storage_config)
        .await
        .map_err(|error| error.to_string())?;
    let report = store.recovery_report();
    tracing::info!(
        shard = parts.id.0,
        clean = report.clean_shutdown,
        log_end = report.log_end.0,
        records_scanned = report.records_scanned,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "storage open"
    );
    // The table changes before the stores when a topic is deleted: queues of a topic the
    // table lacks are a deletion the broker stopped in the middle of. Finish it.
    let mut orphaned: Vec<String> = store
        .queues()
        .into_iter()
        .map(|(topic, _)| topic)
        .filter(|topic| parts.topics.get(topic).is_none())
        .collect();
    orphaned.dedup();
    for topic in orphaned {
        let queues = store.delete_topic(&topic).await.map_err(|error| {
            format!("cannot delete the queues of deleted topic {topic}: {error}")
        })?;
        tracing::info!(
            shard = parts.id.0,
            topic,
            queues,
            "deleted the queues of a deleted topic"
        );
    }
    let offsets = ConsumerOffsetStore::open(
        &shard_dir,
        parts.config.limits.max_consumer_offsets_per_shard,
    )
    .await
    .map_err(|error| error.to_string())?;
    for topic in offsets.topics() {
        if parts.topics.get(&topic).is_none() {
            offsets.remove_topic(&topic);
            tracing::info!(
                shard = parts.id.0,
                topic,
                "dropped the consumer offsets of a deleted topic"
            );
        }
    }
    Ok(Shard::new(parts, store, offsets))
}

/// Flushes and closes the shard's consumer offsets and store.
async fn close_shard(shard: &Rc<Shard>) -> Result<(), String> {
    let offsets = shard
        .offsets
        .close()
        .await
        .map_err(|error| error.to_string());
    let store = shard
        .store
        .clone()
        .close()
        .await
        .map_err(|error| error.to_string());
    offsets.and(store)
}

/// Accepts connections until cancelled, refusing those beyond the shard's limit.
async fn accept_connections(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, shard = shard.id.0, "accept failed");
                glommio::timer::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                continue;
            }
        };
        if let Some(stream) = admit(&shard, stream) {
            glommio::spawn_local(crate::connection::serve(shard.clone(), stream)).detach();
        }
    }
}

/// The stream back if `shard` may serve one more connection (accepted here, or handed over
/// by another shard); otherwise it is refused (see [`refuse_connection`]) and `None`.
pub(crate) fn admit(shard: &Rc<Shard>, stream: TcpStream) -> Option<TcpStream> {
    let limit = shard.config.limits.max_connections_per_shard;
    if shard.connections() < limit {
        return Some(stream);
    }
    tracing::warn!(
        shard = shard.id.0,
        limit,
        "connection refused: too many connections"
    );
    glommio::spawn_local(refuse_connection(shard.clone(), stream)).detach();
    None
}

/// Best effort: a `ServiceUnavailable` connection error, then close.
async fn refuse_connection(shard: Rc<Shard>, mut stream: TcpStream) {
    use futures_lite::AsyncWriteExt;
    let mut output = bytes::BytesMut::new();
    let encoded = shard.encoder.encode_connection_error(
        &mut output,
        ErrorCode::ServiceUnavailable,
        "too many connections",
    );
    if encoded.is_ok() {
        let write = async {
            let _ = stream.write_all(&output).await;
        };
        let give_up = glommio::timer::sleep(Duration::from_millis(ACCEPT_RETRY_MS));
        futures_lite::future::or(write, give_up).await;
    }
}
