//! `TicketLine`: first come, first served among the tasks of one executor. A task takes a
//! numbered ticket, waits until the line serves its number, and when done (or when it gives
//! up, dropped before its turn) lets the line move on to the next ticket still waiting.
//!
//! Used where appends must keep their arrival order across an await: waiting for room in
//! the commit log ([`crate::commit_log`]) and waiting for a queue being created
//! ([`crate::creation_line`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

/// The line's counters; the waiting itself (a [`crate::signal::Signal`]) is the user's.
#[derive(Default)]
pub(crate) struct TicketLine {
    next_ticket: Cell<u64>,
    serving: Cell<u64>,
    /// Tickets given up before their turn, skipped when reached.
    abandoned: RefCell<BTreeSet<u64>>,
}

impl TicketLine {
    /// Whether nobody holds a ticket.
    pub(crate) fn is_empty(&self) -> bool {
        self.next_ticket.get() == self.serving.get()
    }

    /// A new ticket, behind every one taken before.
    pub(crate) fn take(&self) -> u64 {
        let number = self.next_ticket.get();
        self.next_ticket.set(number + 1);
        number
    }

    /// Whether ticket `number` is being served.
    pub(crate) fn is_turn(&self, number: u64) -> bool {
        self.serving.get() == number
    }

    /// Ticket `number` is done with its turn, or gives it up: the line moves on to the next
    /// ticket still waiting once `number` is (or would be) served.
    pub(crate) fn leave(&self, number: u64) {
        if !self.is_turn(number) {
            self.abandoned.borrow_mut().insert(number);
            return;
        }
        let mut serving = number + 1;
        let mut abandoned = self.abandoned.borrow_mut();
        while abandoned.remove(&serving) {
            serving += 1;
        }
        self.serving.set(serving);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_served_in_order_and_given_up_ones_are_skipped() {
        let line = TicketLine::default();
        assert!(line.is_empty());
        let (first, second, third) = (line.take(), line.take(), line.take());
        assert!(line.is_turn(first) && !line.is_turn(second));
        // The second gives up before its turn: served after the first is the third.
        line.leave(second);
        assert!(line.is_turn(first));
        line.leave(first);
        assert!(line.is_turn(third));
        assert!(!line.is_empty());
        line.leave(third);
        assert!(line.is_empty());
    }
}
