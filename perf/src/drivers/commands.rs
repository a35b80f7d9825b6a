//! The load subcommands and their arguments: `produce`, `consume`, `e2e`, `verify`,
//! `quickstart`.
//!
//! Each prints a progress line a second on stderr and, at the end, a summary table on
//! stdout (`--json FILE` and `--hdr FILE` write it as JSON and as HdrHistogram's
//! percentile distribution). Without `--name-server`, `produce` and `e2e` start a local
//! cluster (a name server and a 2-shard broker in a temporary directory under
//! `--data-dir`) and stop it cleanly at the end; `quickstart` is `e2e` on a local cluster
//! with friendly defaults.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spillway_client::{Client, ClientConfig, RequestTimings};
use spillway_storage::FlushMode;

use crate::drivers::consume::{self, ConsumeOptions, StartFrom};
use crate::drivers::produce::{self, ProduceOptions};
use crate::ledger::Ledger;
use crate::local_cluster::{LocalCluster, LocalClusterOptions};
use crate::message_body::{now_micros, MIN_BODY_BYTES};
use crate::stats::{Progress, Summary};
use crate::verification::Verification;
use crate::LoadError;

/// Most messages one pull of a load run asks for (the storage engine's own limit).
const MAX_MESSAGES_PER_PULL: u32 = 4096;
/// How long consumers of an `e2e` run may take to catch up once producers are done.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(30);

/// Flush mode of a local cluster's broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FlushArg {
    /// fdatasync before every acknowledgement (group commit).
    Sync,
    /// Acknowledge on write completion; fdatasync every flush interval.
    Async,
}

/// Where the load goes.
#[derive(Clone, Debug, clap::Args)]
pub struct TargetArgs {
    /// Name servers, host:port, comma-separated. Without one, a local cluster is started
    /// (produce, e2e, quickstart) and stopped at the end.
    #[arg(long = "name-server", value_delimiter = ',')]
    pub name_servers: Vec<String>,
    /// The topic. On an existing cluster it must exist (see `[[topics]]` and
    /// `auto_create_topics` in broker.example.toml).
    #[arg(long, default_value = crate::local_cluster::DEFAULT_TOPIC)]
    pub topic: String,
    /// Local cluster: queues of the topic.
    #[arg(long, default_value_t = crate::local_cluster::DEFAULT_QUEUE_COUNT)]
    pub queues: u32,
    /// Local cluster: the broker's flush mode.
    #[arg(long, value_enum, default_value = "sync")]
    pub flush: FlushArg,
    /// Local cluster: the directory its temporary data directory is made in (must take
    /// O_DIRECT: a local disk, not tmpfs).
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
}

/// How producers send.
#[derive(Clone, Debug, clap::Args)]
pub struct ProducerArgs {
    /// Message body size in bytes (at least 16).
    #[arg(long, default_value_t = 1024)]
    pub message_size: usize,
    /// Producer threads, each with its own producer (all on the run's one client).
    #[arg(long, default_value_t = 2)]
    pub producers: u32,
    /// Messages to send in total (default: send for --duration).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Seconds to send for (default 10 unless --messages is given), after the warm-up.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds to send first without measuring (only errors count, and the ledger records
    /// everything): connections open and the broker allocates its write buffers, so the
    /// figures describe the steady state.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Messages per second in total (default: as fast as acknowledgements allow).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Sends each producer keeps in flight.
    #[arg(long, default_value_t = 4096)]
    pub window: usize,
    /// How long a batch may wait for more messages, in milliseconds (fractions allowed:
    /// 0.5 is half a millisecond).
    #[arg(long, default_value_t = 2.0)]
    pub linger_ms: f64,
    /// Batch size per queue, in bytes.
    #[arg(long, default_value_t = 256 << 10)]
    pub batch_bytes: usize,
    /// Send a batch at once when its broker shard has no request of its producer in
    /// flight (the producer's `send_when_idle`): lower latency below full speed.
    #[arg(long)]
    pub send_when_idle: bool,
}

/// Where the summary goes besides stdout.
#[derive(Clone, Debug, clap::Args)]
pub struct OutputArgs {
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency histogram (HdrHistogram percentile distribution, ms) to this file.
    #[arg(long)]
    pub hdr: Option<PathBuf>,
}

/// `produce`.
#[derive(Clone, Debug, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    producer: ProducerArgs,
    /// Record every acknowledged message (id, broker, queue, offset, CRC) in this file,
    /// for `verify`.
    #[arg(long)]
    ledger: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

/// `consume`.
#[derive(Clone, Debug, clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Consumer threads.
    #[arg(long, default_value_t = 2)]
    consumers: u32,
    /// Where to start in each queue.
    #[arg(long, value_enum, default_value = "earliest")]
    from: StartFrom,
    /// Stop after this many messages.
    #[arg(long)]
    messages: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Stop once every queue is read up to where it ended at the start (a backlog).
    #[arg(long)]
    drain: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// `e2e`.
#[derive(Clone, Debug, clap::Args)]
pub struct EndToEndArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    producer: ProducerArgs,
    /// Consumer threads.
    #[arg(long, default_value_t = 1)]
    consumers: u32,
    #[command(flatten)]
    output: OutputArgs,
}

/// `verify`.
#[derive(Clone, Debug, clap::Args)]
pub struct VerifyArgs {
    /// Name servers, host:port, comma-separated.
    #[arg(long = "name-server", value_delimiter = ',', required = true)]
    name_servers: Vec<String>,
    /// The topic the ledger's messages were sent to.
    #[arg(long, default_value = crate::local_cluster::DEFAULT_TOPIC)]
    topic: String,
    /// The ledger `produce --ledger` wrote.
    #[arg(long)]
    ledger: PathBuf,
    /// Consumer threads.
    #[arg(long, default_value_t = 2)]
    consumers: u32,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// `quickstart`.
#[derive(Clone, Debug, clap::Args)]
pub struct QuickstartArgs {
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    message_size: usize,
    /// Messages per second in total (default: as fast as it goes).
    #[arg(long)]
    rate: Option<f64>,
    /// Where the temporary cluster directory is made (a local disk, not tmpfs).
    #[arg(long, default_value = ".")]
    data_dir: PathBuf,
}

/// A local cluster if no name server was given, and the client settings either way.
struct Target {
    cluster: Option<LocalCluster>,
    client: ClientConfig,
}

impl Target {
    fn open(args: &TargetArgs, may_start_local: bool) -> Result<Target, LoadError> {
        if !args.name_servers.is_empty() {
            return Ok(Target {
                cluster: None,
                client: ClientConfig::new(args.name_servers.iter().cloned()),
            });
        }
        if !may_start_local {
            return Err(LoadError::Failed(
                "--name-server is required: there is nothing to read on a fresh local cluster"
                    .into(),
            ));
        }
        let options = LocalClusterOptions {
            parent_dir: args.data_dir.clone(),
            flush: match args.flush {
                FlushArg::Sync => FlushMode::Sync,
                FlushArg::Async => FlushMode::Async,
            },
            topic: args.topic.clone(),
            queue_count: args.queues,
            ..LocalClusterOptions::default()
        };
        eprintln!(
            "starting a local name server and broker under {}",
            args.data_dir.display()
        );
        let cluster = LocalCluster::start(options)?;
        eprintln!(
            "name server {}, broker {} ({} shards), topic {:?} with {} queues",
            cluster.name_server_address(),
            cluster.broker_address(),
            crate::local_cluster::DEFAULT_SHARD_COUNT,
            cluster.topic(),
            cluster.queue_count()
        );
        let client = ClientConfig::new([cluster.name_server_address().to_string()]);
        Ok(Target {
            cluster: Some(cluster),
            client,
        })
    }

    /// The one client of this run: producers and consumers all share its connections and
    /// routes, as RocketMQ shares one client instance per process (fewer connections, so
    /// fewer client threads, and requests of several producers batched into one write).
    fn connect(&self) -> Result<Client, LoadError> {
        Client::new(self.client.clone()).map_err(LoadError::client)
    }

    fn close(self) -> Result<(), LoadError> {
        match self.cluster {
            Some(cluster) => {
                eprintln!("stopping the local cluster");
                cluster.stop()
            }
            None => Ok(()),
        }
    }
}

fn produce_options(
    target: &TargetArgs,
    producer: &ProducerArgs,
    ledger: Option<PathBuf>,
) -> Result<ProduceOptions, LoadError> {
    if producer.message_size < MIN_BODY_BYTES {
        return Err(LoadError::Failed(format!(
            "--message-size must be at least {MIN_BODY_BYTES} (the id and born time)"
        )));
    }
    if producer.producers == 0 {
        return Err(LoadError::Failed("--producers must be at least 1".into()));
    }
    let duration = match (producer.duration, producer.messages) {
        (Some(seconds), _) => Some(seconds_arg("--duration", seconds)?),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    Ok(ProduceOptions {
        topic: target.topic.clone(),
        message_bytes: producer.message_size,
        producers: producer.producers,
        messages: producer.messages,
        duration,
        warmup: warmup_arg(producer.warmup)?,
        rate: producer.rate,
        window: producer.window,
        linger: linger_arg(producer.linger_ms)?,
        batch_bytes: producer.batch_bytes,
        send_when_idle: producer.send_when_idle,
        ledger,
    })
}

fn warmup_arg(seconds: f64) -> Result<Duration, LoadError> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        LoadError::Failed("--warmup must be zero or a positive number of seconds".into())
    })
}

fn linger_arg(milliseconds: f64) -> Result<Duration, LoadError> {
    Duration::try_from_secs_f64(milliseconds / 1e3).map_err(|_| {
        LoadError::Failed("--linger-ms must be zero or a positive number of milliseconds".into())
    })
}

fn seconds_arg(name: &str, seconds: f64) -> Result<Duration, LoadError> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| LoadError::Failed(format!("{name} must be a positive number of seconds")))
}

/// The producers' requests after the warm-up, timed per stage (nothing if none).
fn request_stages_table(timings: &RequestTimings) -> String {
    if timings.requests() == 0 {
        return String::new();
    }
    let describe = RequestTimings::describe;
    format!(
        "  requests    {} produce requests, each timed per stage:\n\
         \x20   batch wait       {}  (first message of the oldest batch to the request's write)\n\
         \x20   round trip       {}  (the write to the answer read by the connection thread)\n\
         \x20   answer hand-off  {}  (that read to the producer's sender thread settling it)\n",
        timings.requests(),
        describe(&timings.batch_wait_us),
        describe(&timings.round_trip_us),
        describe(&timings.answer_handoff_us),
    )
}

/// Prints a summary and writes the files asked for.
fn report(summary: &Summary, output: &OutputArgs) -> Result<(), LoadError> {
    summary.print_table()?;
    if let Some(path) = &output.json {
        summary.write_json(path)?;
    }
    if let Some(path) = &output.hdr {
        summary.write_hdr(path)?;
    }
    Ok(())
}

/// Stops the run on Ctrl-C / SIGTERM (the run ends early and still reports).
fn stop_flag() -> Result<Arc<AtomicBool>, LoadError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).map_err(|source| {
            LoadError::io("installing a signal handler for", "<signals>", source)
        })?;
    }
    Ok(stop)
}

/// `spillway-perf produce`.
pub fn produce(args: &ProduceArgs) -> Result<(), LoadError> {
    let options = produce_options(&args.target, &args.producer, args.ledger.clone())?;
    let target = Target::open(&args.target, true)?;
    let stop = stop_flag()?;
    let progress = Arc::new(Progress::with_warmup(options.warmup));
    let printer = progress.spawn_printer(Box::new(std::io::stderr()))?;
    let client = target.connect()?;
    let outcome = produce::run(&client, &options, &progress, &stop);
    printer.stop();
    let outcome = outcome?;
    let summary = progress.summary_over("produce", outcome.elapsed);
    report(&summary, &args.output)?;
    print!("{}", request_stages_table(&outcome.request_timings));
    if let Some(path) = &args.ledger {
        eprintln!(
            "ledger: {} acknowledged messages in {}",
            outcome.ledger_entries,
            path.display()
        );
    }
    target.close()
}

/// `spillway-perf consume`.
pub fn consume(args: &ConsumeArgs) -> Result<(), LoadError> {
    let target = Target::open(&args.target, false)?;
    let options = ConsumeOptions {
        topic: args.target.topic.clone(),
        consumers: args.consumers,
        from: args.from,
        messages: args.messages,
        duration: args
            .duration
            .map(|seconds| seconds_arg("--duration", seconds))
            .transpose()?,
        drain: args.drain,
        max_messages_per_pull: MAX_MESSAGES_PER_PULL,
        end_to_end: false,
        measure_born_from_us: None,
        positioned: None,
    };
    let stop = stop_flag()?;
    let progress = Arc::new(Progress::new());
    let printer = progress.spawn_printer(Box::new(std::io::stderr()))?;
    let consumed = Arc::new(AtomicU64::new(0));
    let client = target.connect()?;
    let outcome = consume::run(&client, &options, &progress, &stop, &consumed, None);
    printer.stop();
    let outcome = outcome?;
    report(
        &progress.summary_over("consume", outcome.elapsed),
        &args.output,
    )?;
    target.close()
}

/// `spillway-perf e2e` (and `quickstart`): producers and consumers at once; the summary
/// has the send-to-acknowledgement latency of the producers and the born-to-receipt
/// latency of the consumers.
pub fn end_to_end(args: &EndToEndArgs) -> Result<(), LoadError> {
    let produce_options = produce_options(&args.target, &args.producer, None)?;
    let target = Target::open(&args.target, true)?;
    let result = target.connect().and_then(|client| {
        run_end_to_end(
            &client,
            &args.target.topic,
            &produce_options,
            args.consumers,
            &args.output,
        )
    });
    let closed = target.close();
    result.and(closed)
}

fn run_end_to_end(
    client: &Client,
    topic: &str,
    produce_options: &ProduceOptions,
    consumers: u32,
    output: &OutputArgs,
) -> Result<(), LoadError> {
    let positioned = Arc::new(AtomicBool::new(false));
    let measure_born_from_us = Arc::new(AtomicU64::new(0));
    let consume_options = ConsumeOptions {
        topic: topic.to_owned(),
        consumers,
        from: StartFrom::Latest,
        messages: None,
        duration: None,
        drain: false,
        max_messages_per_pull: MAX_MESSAGES_PER_PULL,
        end_to_end: true,
        measure_born_from_us: Some(measure_born_from_us.clone()),
        positioned: Some(positioned.clone()),
    };
    let stop = stop_flag()?;
    let consumers_stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(Progress::with_warmup(produce_options.warmup));
    let received = Arc::new(Progress::with_warmup(produce_options.warmup));
    let consumed = Arc::new(AtomicU64::new(0));
    let consumer_thread = {
        let (client, received, consumers_stop, consumed) = (
            client.clone(),
            received.clone(),
            consumers_stop.clone(),
            consumed.clone(),
        );
        std::thread::Builder::new()
            .name("consumers".into())
            .spawn(move || {
                consume::run(
                    &client,
                    &consume_options,
                    &received,
                    &consumers_stop,
                    &consumed,
                    None,
                )
            })
            .map_err(|source| LoadError::io("starting the consumers for", "<threads>", source))?
    };
    // Consumers start at the queues' ends: they must know those before anything is sent.
    while !positioned.load(Ordering::Acquire) {
        if consumer_thread.is_finished() {
            break;
        }
        std::thread::park_timeout(Duration::from_millis(5));
    }
    let printer = received.spawn_printer(Box::new(std::io::stderr()))?;
    // The consumers' warm-up ends when the producers' does: both counted from now.
    measure_born_from_us.store(
        now_micros() + produce_options.warmup.as_micros() as u64,
        Ordering::Release,
    );
    let outcome = produce::run(client, produce_options, &produced, &stop);
    let acknowledged = produced.summary("produce").messages
        + outcome
            .as_ref()
            .map_or(0, |outcome| outcome.warmup_acknowledged);
    // Let the consumers read everything acknowledged (or give up after a while).
    let catch_up = Instant::now();
    while consumed.load(Ordering::Relaxed) < acknowledged
        && catch_up.elapsed() < CATCH_UP_DEADLINE
        && !stop.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    consumers_stop.store(true, Ordering::Relaxed);
    printer.stop();
    let consumer_outcome = consumer_thread
        .join()
        .map_err(|_| LoadError::Failed("the consumer thread panicked".into()))?;
    let outcome = outcome?;
    consumer_outcome?;
    let produce_summary = produced.summary_over("produce", outcome.elapsed);
    produce_summary.print_table()?;
    print!("{}", request_stages_table(&outcome.request_timings));
    let end_to_end_summary = received.summary_over("e2e", outcome.elapsed);
    report(&end_to_end_summary, output)?;
    let read = consumed.load(Ordering::Relaxed);
    if read < acknowledged {
        eprintln!("warning: consumers read {read} of {acknowledged} acknowledged messages before giving up");
    }
    Ok(())
}

/// `spillway-perf verify`: reads the topic from the beginning and checks it against the
/// ledger. Returns whether everything acknowledged is there, once, intact, in order.
pub fn verify(args: &VerifyArgs) -> Result<bool, LoadError> {
    let ledger = Ledger::read(&args.ledger)?;
    eprintln!("ledger: {} acknowledged messages", ledger.entries().len());
    let verification = Arc::new(Mutex::new(Verification::new(ledger)?));
    let client = Client::new(ClientConfig::new(args.name_servers.iter().cloned()))
        .map_err(LoadError::client)?;
    let options = ConsumeOptions {
        topic: args.topic.clone(),
        consumers: args.consumers,
        from: StartFrom::Earliest,
        messages: None,
        duration: None,
        drain: true,
        max_messages_per_pull: MAX_MESSAGES_PER_PULL,
        end_to_end: false,
        measure_born_from_us: None,
        positioned: None,
    };
    let stop = stop_flag()?;
    let progress = Arc::new(Progress::new());
    let printer = progress.spawn_printer(Box::new(std::io::stderr()))?;
    let consumed = Arc::new(AtomicU64::new(0));
    let outcome = consume::run(
        &client,
        &options,
        &progress,
        &stop,
        &consumed,
        Some(verification.clone()),
    );
    printer.stop();
    outcome?;
    let verification = Arc::into_inner(verification)
        .ok_or_else(|| LoadError::Failed("the verification is still in use".into()))?
        .into_inner()
        .map_err(|_| LoadError::Failed("a consumer panicked while verifying".into()))?;
    let report = verification.finish();
    println!("{report}");
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|error| LoadError::Serialize {
            what: "the verification report",
            reason: error.to_string(),
        })?;
        std::fs::write(path, json).map_err(|source| LoadError::io("writing", path, source))?;
    }
    Ok(report.is_clean())
}

/// `spillway-perf quickstart`: a local cluster, a short e2e load, the summary, a clean
/// stop.
pub fn quickstart(args: &QuickstartArgs) -> Result<(), LoadError> {
    let target = TargetArgs {
        name_servers: Vec::new(),
        topic: crate::local_cluster::DEFAULT_TOPIC.to_owned(),
        queues: crate::local_cluster::DEFAULT_QUEUE_COUNT,
        flush: FlushArg::Sync,
        data_dir: args.data_dir.clone(),
    };
    let producer = ProducerArgs {
        message_size: args.message_size,
        producers: 2,
        messages: None,
        duration: Some(args.duration),
        warmup: 0.0,
        rate: args.rate,
        window: 4096,
        linger_ms: 2.0,
        batch_bytes: 256 << 10,
        send_when_idle: false,
    };
    end_to_end(&EndToEndArgs {
        target,
        producer,
        consumers: 1,
        output: OutputArgs {
            json: None,
            hdr: None,
        },
    })
}
