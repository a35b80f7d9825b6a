//! `CreationLines`: appends to a queue that does not exist yet go in the order they arrived.
//!
//! Creating a queue awaits file I/O (its index file). Appends that arrive meanwhile, and
//! appends that arrive after it exists but while earlier ones still wait, must not overtake
//! the earlier ones: a producer's batches (the parts of its successive produce requests)
//! would land in its queue out of the order it sent them. So an append that finds its queue
//! missing, or a line already formed for it, takes a ticket in that queue's line before its
//! first await and places its records only on its turn; the line goes away when the last
//! ticket leaves. Appends to existing queues with no line pass straight through (nothing
//! await between their arrival and their placement but the room line, itself in order).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::ids::QueueId;
use crate::signal::Signal;
use crate::ticket_line::TicketLine;

/// A queue: its topic and id.
type QueueKey = (Rc<str>, QueueId);

/// The lines of the queues being created on one shard.
#[derive(Default)]
pub(crate) struct CreationLines {
    lines: RefCell<HashMap<QueueKey, Rc<CreationLine>>>,
}

#[derive(Default)]
struct CreationLine {
    tickets: TicketLine,
    /// Notified whenever a ticket leaves.
    moved: Signal,
}

impl CreationLines {
    /// A place in `queue`'s line if it has one or, when `exists` says the queue does not
    /// exist, in a new one; `None` when the queue exists and nobody waits for it.
    pub(crate) fn join(
        lines: &Rc<CreationLines>,
        topic: &str,
        queue: QueueId,
        exists: impl FnOnce() -> bool,
    ) -> Option<CreationTurn> {
        let mut map = lines.lines.borrow_mut();
        let key = (Rc::<str>::from(topic), queue);
        let line = match map.get(&key) {
            Some(line) => line.clone(),
            None if exists() => return None,
            None => map.entry(key.clone()).or_default().clone(),
        };
        let number = line.tickets.take();
        Some(CreationTurn {
            lines: lines.clone(),
            key,
            line,
            number,
        })
    }
}

/// An append's place in its queue's creation line; leaves the line when dropped (done, or
/// given up).
pub(crate) struct CreationTurn {
    lines: Rc<CreationLines>,
    key: QueueKey,
    line: Rc<CreationLine>,
    number: u64,
}

impl CreationTurn {
    /// Waits until every append that joined the line before this one has left it.
    pub(crate) async fn wait(&self) {
        loop {
            let moved = self.line.moved.changed();
            if self.line.tickets.is_turn(self.number) {
                return;
            }
            moved.await;
        }
    }
}

impl Drop for CreationTurn {
    fn drop(&mut self) {
        self.line.tickets.leave(self.number);
        if self.line.tickets.is_empty() {
            self.lines.lines.borrow_mut().remove(&self.key);
        }
        self.line.moved.notify();
    }
}
