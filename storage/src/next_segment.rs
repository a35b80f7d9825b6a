//! Creating the next commit-log segment ahead of the roll, off the write path.
//!
//! Creating a segment costs an open, a `fallocate` of the whole segment and an fsync of the
//! directory: 2–7 ms on the development VM when the disk is calm, more under write load.
//! Done at the roll, the writer (and every append waiting for it) would stall that long
//! once per segment. So once an append lands past the middle of the current segment, a
//! background task creates the next one (its start is known: segments are `segment_size_bytes` apart) and
//! keeps it open; the roll then finds its file ready. RocketMQ's `AllocateMappedFileService`
//! does the same for its mapped files.
//!
//! A prepared segment holds no record until the roll, so it changes nothing a reader or
//! recovery relies on:
//! * a clean shutdown removes it, so a clean restart continues in the current segment;
//! * after a crash, recovery finds it all zeros: the log continues at its start (exactly as
//!   after a roll), or, when the segment before it ends in a torn tail, the cut deletes it
//!   with every later segment.
//!
//! If creating it fails, the failure is logged and the roll tries again itself, failing the
//! log as it always has if the disk refuses.

use std::rc::Rc;

use glommio::io::DmaFile;

use crate::commit_log::{
    open_segment_file, segment_file_name, sync_directory, CommitLog, LogState,
};
use crate::error::Result;

/// The next segment while it is created, or once it is ready.
#[derive(Default)]
pub(crate) enum NextSegment {
    /// Nothing prepared.
    #[default]
    None,
    /// The file of the segment starting here is being created.
    Creating(u64),
    /// The file of the segment starting here is ready and holds nothing yet.
    Ready(u64, Rc<DmaFile>),
    /// Creating the segment starting here failed; the roll creates it itself.
    Failed(u64),
}

impl NextSegment {
    /// The start of the segment this is about, if any.
    fn start(&self) -> Option<u64> {
        match self {
            NextSegment::None => None,
            NextSegment::Creating(start)
            | NextSegment::Ready(start, _)
            | NextSegment::Failed(start) => Some(*start),
        }
    }

    /// Whether the file of the segment starting at `start` is being created now.
    pub(crate) fn is_creating(&self, start: u64) -> bool {
        matches!(self, NextSegment::Creating(at) if *at == start)
    }

    /// The prepared file of the segment starting at `start`, taken out.
    pub(crate) fn take_ready(&mut self, start: u64) -> Option<Rc<DmaFile>> {
        match std::mem::take(self) {
            NextSegment::Ready(at, file) if at == start => Some(file),
            other => {
                *self = other;
                None
            }
        }
    }
}

impl LogState {
    /// The segment to prepare now, if any: the one after the current segment once the log
    /// is past the current one's middle, unless it is prepared, under way, or was tried.
    pub(crate) fn segment_to_prepare(&self, segment_size: u64) -> Option<u64> {
        let current = self.current_segment_start();
        let next = current + segment_size;
        let past_middle = self.append_end >= current + segment_size / 2;
        (past_middle && self.next_segment.start() != Some(next)).then_some(next)
    }
}

impl CommitLog {
    /// The background task: whenever an append asks (see [`CommitLog::place`]), creates
    /// the segment [`LogState::segment_to_prepare`] names, until the log closes or fails.
    /// Only appends ask, so a store opened and closed without appending creates nothing.
    pub(crate) async fn next_segment_loop(self: Rc<Self>) {
        loop {
            // Checked before waiting too: a close that began while a file was being created
            // notified no one.
            let changed = self.next_segment_signal.changed();
            if self.is_closing_or_failed() {
                return;
            }
            changed.await;
            if self.is_closing_or_failed() {
                return;
            }
            let start = self
                .state
                .borrow()
                .segment_to_prepare(self.config.segment_size_bytes);
            let Some(start) = start else {
                continue;
            };
            self.state.borrow_mut().next_segment = NextSegment::Creating(start);
            let created = self.create_segment_file(start).await;
            let mut state = self.state.borrow_mut();
            state.next_segment = match created {
                Ok(file) => {
                    state.stats.segments_created_ahead += 1;
                    match state.segments.get_mut(&start) {
                        // The log rolled while the file was created: hand it over now.
                        Some(segment) => {
                            segment.file.get_or_insert(file);
                            NextSegment::None
                        }
                        None => NextSegment::Ready(start, file),
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        shard = self.config.shard_id.0,
                        segment = %segment_file_name(start),
                        %error,
                        "could not create the next segment ahead; the roll will try again"
                    );
                    NextSegment::Failed(start)
                }
            };
            drop(state);
            self.next_segment_signal.notify();
        }
    }

    /// Resolves once the segment after the current one is ready, or its creation failed,
    /// or the log closes or fails. Waits for an append to ask for it first.
    pub(crate) async fn next_segment_settled(&self) {
        loop {
            let changed = self.next_segment_signal.changed();
            {
                let state = self.state.borrow();
                let next = state.current_segment_start() + self.config.segment_size_bytes;
                let settled = matches!(
                    state.next_segment,
                    NextSegment::Ready(start, _) | NextSegment::Failed(start) if start == next
                );
                if settled || state.closing || state.failure.is_some() {
                    return;
                }
            }
            changed.await;
        }
    }

    fn is_closing_or_failed(&self) -> bool {
        let state = self.state.borrow();
        state.closing || state.failure.is_some()
    }

    /// Creates, preallocates and opens the segment file starting at `start`, and makes its
    /// name durable.
    pub(crate) async fn create_segment_file(&self, start: u64) -> Result<Rc<DmaFile>> {
        let path = self.dir.join(segment_file_name(start));
        let file = Rc::new(open_segment_file(&path, true, self.config.segment_size_bytes).await?);
        sync_directory(&self.dir).await?;
        Ok(file)
    }

    /// At a clean shutdown: removes a prepared segment that never received a record, so the
    /// next start continues in the current segment.
    pub(crate) fn remove_unused_next_segment(&self) -> Result<()> {
        let prepared = std::mem::take(&mut self.state.borrow_mut().next_segment);
        if let NextSegment::Ready(start, file) = prepared {
            drop(file);
            let path = self.dir.join(segment_file_name(start));
            std::fs::remove_file(&path).map_err(|error| {
                crate::error::StorageError::io("remove unused next segment", &path, error)
            })?;
        }
        Ok(())
    }
}
