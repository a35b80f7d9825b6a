//! [`Verification`]: compares what a consumer read back from a topic with the [`Ledger`]
//! of what the brokers acknowledged, and says what went wrong ([`VerificationReport`]).
//!
//! Feed it every message read from every queue from the beginning to the end
//! ([`Verification::observe`]: broker, queue, offset, body), in any order — redelivering
//! the same message at the same offset is harmless — then [`Verification::finish`]. The
//! checks:
//!
//! * **lost**: an acknowledged message seen nowhere;
//! * **duplicated**: one message id stored at two or more places (broker, queue, offset).
//!   Duplicates of acknowledged messages fail the verification; duplicates of messages
//!   never acknowledged (a retried send whose first answer was lost) are reported only;
//! * **corrupted**, at most one finding per place: the body at an acknowledged place has
//!   another CRC than the one acknowledged, or is another message; an acknowledged message
//!   is found only somewhere other than its acknowledged place; two reads of one place
//!   disagree; a body that no ledger entry covers is not a load generator body, or its
//!   filler does not match its id ([`crate::message_body::filler_matches`]);
//! * **out of order**: within a queue, one producer's sequence numbers must increase with
//!   the offset (only the first copy of each message and intact bodies are considered).
//!
//! It holds every observation in memory until `finish` (about 60 bytes per message, plus
//! the ledger), which suits the runs a load test verifies. Pure logic: no I/O.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;
use spillway_wire::{QueueId, QueueOffset};

use crate::ledger::Ledger;
use crate::load_error::LoadError;
use crate::message_body::{body_crc, filler_matches, parse_body, MessageId};

/// Findings of each kind listed in a report (the counts are complete).
pub const MAX_LISTED: usize = 10;

/// A place in the topic: broker, queue, offset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Place {
    /// The broker (group).
    pub broker: String,
    /// The queue.
    pub queue_id: u32,
    /// The offset in the queue.
    pub queue_offset: u64,
}

impl fmt::Display for Place {
    /// `broker-a/3@17`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.broker, self.queue_id, self.queue_offset)
    }
}

/// An acknowledged message seen nowhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lost {
    /// The message.
    pub id: MessageId,
    /// Where the acknowledgement said it was stored.
    pub acknowledged_at: Place,
}

/// A message stored more than once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    /// The message.
    pub id: MessageId,
    /// Whether the ledger lists it.
    pub acknowledged: bool,
    /// Every place it was seen, in place order.
    pub places: Vec<Place>,
}

/// What is wrong at a place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CorruptionReason {
    /// The acknowledged message is there, but its body's CRC differs.
    BodyCrcMismatch {
        /// The CRC acknowledged.
        expected: u32,
        /// The CRC of the body read.
        found: u32,
    },
    /// Another message (or an unreadable body: `found` absent) is where the
    /// acknowledgement put this one.
    WrongMessage {
        /// The message acknowledged there.
        expected: MessageId,
        /// The message read there.
        found: Option<MessageId>,
    },
    /// The acknowledged message was not at its acknowledged place but here.
    FoundElsewhere {
        /// The message.
        id: MessageId,
        /// Where the acknowledgement said it was.
        acknowledged_at: Place,
    },
    /// Two reads of this place returned different bodies.
    InconsistentReads {
        /// The first message read (absent: unreadable).
        first: Option<MessageId>,
        /// The other one.
        second: Option<MessageId>,
    },
    /// A body shorter than a load generator body's header.
    Unrecognized,
    /// A body whose filler is not the one its id seeds.
    FillerMismatch {
        /// The id it claims.
        id: MessageId,
    },
}

/// A damaged place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Corruption {
    /// Where.
    pub place: Place,
    /// What is wrong.
    pub reason: CorruptionReason,
}

/// A message stored after a later message of the same producer in the same queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutOfOrder {
    /// The message.
    pub id: MessageId,
    /// Where it is.
    pub place: Place,
    /// The producer's message just before it in the queue, with a higher sequence number.
    pub after: MessageId,
    /// That message's offset.
    pub after_offset: u64,
}

/// What [`Verification::finish`] found. Serializes for `--json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerificationReport {
    /// Messages the ledger lists.
    pub acknowledged: u64,
    /// Messages fed to [`Verification::observe`], redeliveries included.
    pub observed: u64,
    /// Acknowledged messages seen somewhere.
    pub found: u64,
    /// Acknowledged messages seen nowhere.
    pub lost: u64,
    /// The first [`MAX_LISTED`] lost messages, in ledger order.
    pub lost_first: Vec<Lost>,
    /// Acknowledged messages stored more than once.
    pub duplicated: u64,
    /// Messages never acknowledged that are stored more than once (reported, not a failure).
    pub unacknowledged_duplicated: u64,
    /// The first [`MAX_LISTED`] duplicates of either kind, acknowledged ones first.
    pub duplicated_first: Vec<Duplicate>,
    /// Damaged places.
    pub corrupted: u64,
    /// The first [`MAX_LISTED`] damaged places, in place order.
    pub corrupted_first: Vec<Corruption>,
    /// Messages out of their producer's order within a queue.
    pub out_of_order: u64,
    /// The first [`MAX_LISTED`] of them, in place order.
    pub out_of_order_first: Vec<OutOfOrder>,
    /// Distinct intact messages seen that the ledger does not list (sent but not
    /// acknowledged, or from a run without a ledger).
    pub unacknowledged: u64,
}

impl VerificationReport {
    /// No acknowledged message lost, duplicated, corrupted or out of order.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.corrupted == 0 && self.out_of_order == 0
    }
}

impl fmt::Display for VerificationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "verify: {}: {} acknowledged, {} found, {} lost, {} duplicated, {} corrupted, {} \
             out of order ({} messages read, {} never acknowledged, {} unacknowledged \
             duplicates)",
            if self.is_clean() { "clean" } else { "FAILED" },
            self.acknowledged,
            self.found,
            self.lost,
            self.duplicated,
            self.corrupted,
            self.out_of_order,
            self.observed,
            self.unacknowledged,
            self.unacknowledged_duplicated
        )?;
        for lost in &self.lost_first {
            writeln!(
                f,
                "  lost {} (acknowledged at {})",
                lost.id, lost.acknowledged_at
            )?;
        }
        for duplicate in &self.duplicated_first {
            let places: Vec<String> = duplicate.places.iter().map(Place::to_string).collect();
            writeln!(
                f,
                "  duplicated {}{} at {}",
                duplicate.id,
                if duplicate.acknowledged {
                    ""
                } else {
                    " (never acknowledged)"
                },
                places.join(", ")
            )?;
        }
        for corruption in &self.corrupted_first {
            writeln!(
                f,
                "  corrupted at {}: {:?}",
                corruption.place, corruption.reason
            )?;
        }
        for out_of_order in &self.out_of_order_first {
            writeln!(
                f,
                "  out of order {} at {}, after {} at offset {}",
                out_of_order.id, out_of_order.place, out_of_order.after, out_of_order.after_offset
            )?;
        }
        Ok(())
    }
}

/// One message as read: where and what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Observation {
    offset: u64,
    /// `None`: the body is too short to carry an id.
    id: Option<MessageId>,
    crc: u32,
    filler_ok: bool,
}

/// A queue of a broker, by the broker's index.
type QueueKey = (u16, u32);
/// A place: queue and offset.
type PlaceKey = (QueueKey, u64);

/// Collects observations and checks them against a ledger.
#[derive(Debug)]
pub struct Verification {
    ledger: Ledger,
    /// Broker names: the ledger's, then any others observed.
    brokers: Vec<String>,
    broker_indexes: HashMap<String, u16>,
    /// Ledger entry index by message id.
    acknowledged_by_id: HashMap<MessageId, usize>,
    /// Ledger entry index by place.
    acknowledged_by_place: HashMap<PlaceKey, usize>,
    queues: HashMap<QueueKey, Vec<Observation>>,
    observed: u64,
}

impl Verification {
    /// A verification against `ledger`. Refuses a ledger that lists one message twice or
    /// two messages at one place: no broker can have acknowledged that.
    pub fn new(ledger: Ledger) -> Result<Verification, LoadError> {
        let brokers = ledger.brokers().to_vec();
        let broker_indexes = brokers
            .iter()
            .enumerate()
            .map(|(index, name)| (name.clone(), index as u16))
            .collect();
        let mut acknowledged_by_id = HashMap::with_capacity(ledger.entries().len());
        let mut acknowledged_by_place = HashMap::with_capacity(ledger.entries().len());
        for (index, entry) in ledger.entries().iter().enumerate() {
            if acknowledged_by_id.insert(entry.id, index).is_some() {
                return Err(LoadError::LedgerContents {
                    reason: format!("message {} is listed twice", entry.id),
                });
            }
            let place = ((entry.broker_index, entry.queue_id.0), entry.queue_offset.0);
            if let Some(other) = acknowledged_by_place.insert(place, index) {
                return Err(LoadError::LedgerContents {
                    reason: format!(
                        "messages {} and {} are both acknowledged at {}",
                        ledger.entries()[other].id,
                        entry.id,
                        place_of(&brokers, place.0, place.1)
                    ),
                });
            }
        }
        Ok(Verification {
            ledger,
            brokers,
            broker_indexes,
            acknowledged_by_id,
            acknowledged_by_place,
            queues: HashMap::new(),
            observed: 0,
        })
    }

    /// Records one message read from `broker_name`'s queue `queue_id` at `queue_offset`.
    pub fn observe(
        &mut self,
        broker_name: &str,
        queue_id: QueueId,
        queue_offset: QueueOffset,
        body: &[u8],
    ) {
        let broker = match self.broker_indexes.get(broker_name) {
            Some(&index) => index,
            None => {
                // More than 65536 brokers in one verification is not a load test.
                let index = u16::try_from(self.brokers.len())
                    .expect("at most 65536 brokers in one verification");
                self.brokers.push(broker_name.to_owned());
                self.broker_indexes.insert(broker_name.to_owned(), index);
                index
            }
        };
        let id = parse_body(body).map(|(id, _)| id);
        self.queues
            .entry((broker, queue_id.0))
            .or_default()
            .push(Observation {
                offset: queue_offset.0,
                id,
                crc: body_crc(body),
                filler_ok: id.is_some() && filler_matches(body),
            });
        self.observed += 1;
    }

    /// Checks everything observed against the ledger.
    pub fn finish(self) -> VerificationReport {
        let Verification {
            ledger,
            brokers,
            acknowledged_by_id,
            acknowledged_by_place,
            mut queues,
            observed,
            ..
        } = self;
        let entries = ledger.entries();
        let mut report = VerificationReport {
            acknowledged: entries.len() as u64,
            observed,
            ..VerificationReport::default()
        };
        // Findings by place, so each list comes out in place order.
        let mut corrupted: BTreeMap<PlaceKey, CorruptionReason> = BTreeMap::new();

        // 1. One observation per place: drop redeliveries, flag places read two ways.
        let mut keys: Vec<QueueKey> = queues.keys().copied().collect();
        keys.sort_unstable();
        for key in &keys {
            let observations = queues.get_mut(key).expect("the key was just listed");
            observations.sort_by_key(|observation| observation.offset);
            let mut kept: Vec<Observation> = Vec::with_capacity(observations.len());
            for &observation in observations.iter() {
                match kept.last() {
                    Some(last) if last.offset == observation.offset => {
                        if (last.id, last.crc) != (observation.id, observation.crc) {
                            corrupted.entry((*key, observation.offset)).or_insert(
                                CorruptionReason::InconsistentReads {
                                    first: last.id,
                                    second: observation.id,
                                },
                            );
                        }
                    }
                    _ => kept.push(observation),
                }
            }
            *observations = kept;
        }

        // 2. Where each message id was seen; the first place (in place order) is its copy.
        let mut places_by_id: HashMap<MessageId, Vec<PlaceKey>> = HashMap::new();
        for key in &keys {
            for observation in &queues[key] {
                if let (Some(id), true) = (observation.id, observation.filler_ok) {
                    places_by_id
                        .entry(id)
                        .or_default()
                        .push((*key, observation.offset));
                }
            }
        }
        // Acknowledged messages are intact at their place even if a flipped filler bit
        // would say otherwise: the CRC check below decides for them.
        for key in &keys {
            for observation in &queues[key] {
                let place = (*key, observation.offset);
                if let (Some(id), false) = (observation.id, observation.filler_ok) {
                    if acknowledged_by_place
                        .get(&place)
                        .is_some_and(|&index| entries[index].id == id)
                    {
                        places_by_id.entry(id).or_default().push(place);
                    }
                }
            }
        }
        for places in places_by_id.values_mut() {
            places.sort_unstable();
        }

        // 3. Every place against the ledger.
        for key in &keys {
            for observation in &queues[key] {
                let place = (*key, observation.offset);
                let reason = match acknowledged_by_place.get(&place) {
                    Some(&index) => {
                        let entry = &entries[index];
                        if observation.id != Some(entry.id) {
                            Some(CorruptionReason::WrongMessage {
                                expected: entry.id,
                                found: observation.id,
                            })
                        } else if observation.crc != entry.body_crc {
                            Some(CorruptionReason::BodyCrcMismatch {
                                expected: entry.body_crc,
                                found: observation.crc,
                            })
                        } else {
                            None
                        }
                    }
                    None => match observation.id {
                        None => Some(CorruptionReason::Unrecognized),
                        Some(id) if !observation.filler_ok => {
                            Some(CorruptionReason::FillerMismatch { id })
                        }
                        Some(_) => None,
                    },
                };
                if let Some(reason) = reason {
                    corrupted.entry(place).or_insert(reason);
                }
            }
        }

        // 4. Every acknowledged message: found at its place, elsewhere, or lost.
        for entry in entries {
            let place = ((entry.broker_index, entry.queue_id.0), entry.queue_offset.0);
            let Some(places) = places_by_id.get(&entry.id) else {
                report.lost += 1;
                if report.lost_first.len() < MAX_LISTED {
                    report.lost_first.push(Lost {
                        id: entry.id,
                        acknowledged_at: place_of(&brokers, place.0, place.1),
                    });
                }
                continue;
            };
            report.found += 1;
            if !places.contains(&place) {
                corrupted
                    .entry(places[0])
                    .or_insert(CorruptionReason::FoundElsewhere {
                        id: entry.id,
                        acknowledged_at: place_of(&brokers, place.0, place.1),
                    });
            }
        }

        // 5. Duplicates, acknowledged first, each kind in id order.
        let mut duplicates: Vec<(bool, MessageId, &Vec<PlaceKey>)> = places_by_id
            .iter()
            .filter(|(_, places)| places.len() > 1)
            .map(|(id, places)| (acknowledged_by_id.contains_key(id), *id, places))
            .collect();
        duplicates.sort_unstable_by_key(|&(acknowledged, id, _)| (!acknowledged, id));
        for &(acknowledged, id, places) in &duplicates {
            if acknowledged {
                report.duplicated += 1;
            } else {
                report.unacknowledged_duplicated += 1;
            }
            if report.duplicated_first.len() < MAX_LISTED {
                report.duplicated_first.push(Duplicate {
                    id,
                    acknowledged,
                    places: places
                        .iter()
                        .map(|&(key, offset)| place_of(&brokers, key, offset))
                        .collect(),
                });
            }
        }

        // 6. Order within each queue, over the first copy of each intact message.
        for key in &keys {
            let mut last_by_producer: HashMap<u32, (MessageId, u64)> = HashMap::new();
            for observation in &queues[key] {
                let Some(id) = observation.id else { continue };
                let place = (*key, observation.offset);
                let first_copy = places_by_id
                    .get(&id)
                    .is_some_and(|places| places[0] == place);
                if !first_copy {
                    continue;
                }
                if let Some(&(previous, previous_offset)) = last_by_producer.get(&id.producer()) {
                    if id.sequence() <= previous.sequence() {
                        report.out_of_order += 1;
                        if report.out_of_order_first.len() < MAX_LISTED {
                            report.out_of_order_first.push(OutOfOrder {
                                id,
                                place: place_of(&brokers, *key, observation.offset),
                                after: previous,
                                after_offset: previous_offset,
                            });
                        }
                    }
                }
                last_by_producer.insert(id.producer(), (id, observation.offset));
            }
        }

        report.unacknowledged = places_by_id
            .keys()
            .filter(|id| !acknowledged_by_id.contains_key(id))
            .count() as u64;
        report.corrupted = corrupted.len() as u64;
        report.corrupted_first = corrupted
            .into_iter()
            .take(MAX_LISTED)
            .map(|((key, offset), reason)| Corruption {
                place: place_of(&brokers, key, offset),
                reason,
            })
            .collect();
        report
    }
}

fn place_of(brokers: &[String], (broker, queue): QueueKey, offset: u64) -> Place {
    Place {
        broker: brokers
            .get(usize::from(broker))
            .cloned()
            .unwrap_or_else(|| format!("broker #{broker}")),
        queue_id: queue,
        queue_offset: offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::LedgerEntry;
    use crate::message_body::fill_body_at;

    const BROKER: &str = "broker-a";

    fn body(id: MessageId) -> Vec<u8> {
        let mut body = Vec::new();
        fill_body_at(id, 1_000 + id.0, 64, &mut body);
        body
    }

    fn entry(id: MessageId, queue: u32, offset: u64) -> LedgerEntry {
        LedgerEntry {
            id,
            broker_index: 0,
            queue_id: QueueId(queue),
            queue_offset: QueueOffset(offset),
            body_crc: body_crc(&body(id)),
        }
    }

    fn ledger(entries: Vec<LedgerEntry>) -> Ledger {
        Ledger::from_parts(vec![BROKER.to_owned()], entries)
    }

    fn id(producer: u32, sequence: u64) -> MessageId {
        MessageId::new(producer, sequence)
    }

    /// Two producers, queue 0 gets p0:0 p1:0 p0:1, queue 1 gets p1:1; all acknowledged.
    fn clean_run() -> (Ledger, Vec<(u32, u64, MessageId)>) {
        let stored = vec![
            (0, 0, id(0, 0)),
            (0, 1, id(1, 0)),
            (0, 2, id(0, 1)),
            (1, 0, id(1, 1)),
        ];
        let entries = stored
            .iter()
            .map(|&(queue, offset, id)| entry(id, queue, offset))
            .collect();
        (ledger(entries), stored)
    }

    fn verify(ledger: Ledger, stored: &[(u32, u64, Vec<u8>)]) -> VerificationReport {
        let mut verification = Verification::new(ledger).unwrap();
        for (queue, offset, body) in stored {
            verification.observe(BROKER, QueueId(*queue), QueueOffset(*offset), body);
        }
        verification.finish()
    }

    fn bodies(stored: &[(u32, u64, MessageId)]) -> Vec<(u32, u64, Vec<u8>)> {
        stored
            .iter()
            .map(|&(queue, offset, id)| (queue, offset, body(id)))
            .collect()
    }

    #[test]
    fn everything_stored_once_in_order_is_clean() {
        let (ledger, stored) = clean_run();
        let report = verify(ledger, &bodies(&stored));
        assert!(report.is_clean(), "{report}");
        assert_eq!(
            (report.acknowledged, report.found, report.observed),
            (4, 4, 4)
        );
        assert_eq!(report.unacknowledged, 0);
        assert!(report.to_string().starts_with("verify: clean"), "{report}");
    }

    #[test]
    fn observation_order_and_redelivery_do_not_matter() {
        let (ledger, stored) = clean_run();
        let mut observed = bodies(&stored);
        observed.reverse();
        observed.push(observed[0].clone());
        observed.push(observed[2].clone());
        let report = verify(ledger, &observed);
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.observed, 6);
    }

    #[test]
    fn an_acknowledged_message_never_stored_is_lost() {
        let (mut ledger, stored) = clean_run();
        // The ledger claims p2:0 at queue 1 offset 1, which the topic does not have.
        let mut entries = ledger.entries().to_vec();
        entries.push(entry(id(2, 0), 1, 1));
        ledger = self::ledger(entries);
        let report = verify(ledger, &bodies(&stored));
        assert!(!report.is_clean());
        assert_eq!((report.acknowledged, report.found, report.lost), (5, 4, 1));
        assert_eq!(
            report.lost_first,
            [Lost {
                id: id(2, 0),
                acknowledged_at: Place {
                    broker: BROKER.into(),
                    queue_id: 1,
                    queue_offset: 1
                }
            }]
        );
        assert_eq!(report.corrupted, 0);
        assert!(report
            .to_string()
            .contains("lost 2:0 (acknowledged at broker-a/1@1)"));
    }

    #[test]
    fn only_the_first_ten_lost_are_listed_but_all_are_counted() {
        let entries = (0..25)
            .map(|sequence| entry(id(0, sequence), 0, sequence))
            .collect();
        let report = verify(ledger(entries), &[]);
        assert_eq!(report.lost, 25);
        assert_eq!(report.lost_first.len(), MAX_LISTED);
        assert_eq!(report.lost_first[9].id, id(0, 9));
    }

    #[test]
    fn an_acknowledged_message_stored_twice_is_duplicated() {
        let (ledger, mut stored) = clean_run();
        stored.push((0, 3, id(1, 0))); // p1:0 again, after p0:1
        let report = verify(ledger, &bodies(&stored));
        assert!(!report.is_clean());
        assert_eq!(
            (report.duplicated, report.unacknowledged_duplicated),
            (1, 0)
        );
        let duplicate = &report.duplicated_first[0];
        assert_eq!(duplicate.id, id(1, 0));
        assert!(duplicate.acknowledged);
        let offsets: Vec<u64> = duplicate
            .places
            .iter()
            .map(|place| place.queue_offset)
            .collect();
        assert_eq!(offsets, [1, 3]);
        assert_eq!(
            report.out_of_order, 0,
            "a second copy is not an ordering error"
        );
        assert_eq!(report.corrupted, 0);
    }

    #[test]
    fn a_duplicate_of_an_unacknowledged_message_is_reported_but_clean() {
        let (ledger, mut stored) = clean_run();
        stored.push((1, 1, id(3, 0)));
        stored.push((1, 2, id(3, 0)));
        let report = verify(ledger, &bodies(&stored));
        assert!(report.is_clean(), "{report}");
        assert_eq!(
            (report.duplicated, report.unacknowledged_duplicated),
            (0, 1)
        );
        assert_eq!(report.unacknowledged, 1);
        assert!(!report.duplicated_first[0].acknowledged);
        assert!(report.to_string().contains("(never acknowledged)"));
    }

    #[test]
    fn a_changed_body_is_corrupted() {
        let (ledger, stored) = clean_run();
        let mut observed = bodies(&stored);
        observed[2].2[40] ^= 0x04; // p0:1 at queue 0 offset 2
        let report = verify(ledger, &observed);
        assert!(!report.is_clean());
        assert_eq!(report.corrupted, 1);
        let corruption = &report.corrupted_first[0];
        assert_eq!(corruption.place.queue_offset, 2);
        assert!(matches!(
            corruption.reason,
            CorruptionReason::BodyCrcMismatch { .. }
        ));
        assert_eq!(report.lost, 0, "the message is there, damaged");
        assert_eq!(report.found, 4);
    }

    #[test]
    fn a_changed_born_time_is_corrupted_though_the_filler_is_intact() {
        let (ledger, stored) = clean_run();
        let mut observed = bodies(&stored);
        observed[0].2[9] ^= 0x01;
        let report = verify(ledger, &observed);
        assert_eq!(report.corrupted, 1);
        assert!(matches!(
            report.corrupted_first[0].reason,
            CorruptionReason::BodyCrcMismatch { .. }
        ));
    }

    #[test]
    fn another_message_at_an_acknowledged_offset_is_corrupted() {
        let (ledger, mut stored) = clean_run();
        // Queue 1 offset 0 should hold p1:1 but holds p4:0; p1:1 is nowhere.
        stored[3].2 = id(4, 0);
        let report = verify(ledger, &bodies(&stored));
        assert!(!report.is_clean());
        assert_eq!(report.corrupted, 1);
        assert_eq!(
            report.corrupted_first[0].reason,
            CorruptionReason::WrongMessage {
                expected: id(1, 1),
                found: Some(id(4, 0))
            }
        );
        assert_eq!(report.lost, 1);
        assert_eq!(report.lost_first[0].id, id(1, 1));
    }

    #[test]
    fn an_acknowledged_message_at_another_offset_is_corrupted() {
        let (ledger, mut stored) = clean_run();
        // p1:1 was acknowledged at queue 1 offset 0 but is at offset 5.
        stored[3].1 = 5;
        let report = verify(ledger, &bodies(&stored));
        assert!(!report.is_clean());
        assert_eq!(report.lost, 0);
        assert_eq!(report.corrupted, 1);
        let corruption = &report.corrupted_first[0];
        assert_eq!(corruption.place.queue_offset, 5);
        assert!(matches!(
            &corruption.reason,
            CorruptionReason::FoundElsewhere { id: found, acknowledged_at }
                if *found == id(1, 1) && acknowledged_at.queue_offset == 0
        ));
    }

    #[test]
    fn reads_of_one_place_that_disagree_are_corrupted() {
        let (ledger, stored) = clean_run();
        let mut observed = bodies(&stored);
        observed.push((0, 1, body(id(9, 9))));
        let report = verify(ledger, &observed);
        assert_eq!(report.corrupted, 1);
        assert!(matches!(
            report.corrupted_first[0].reason,
            CorruptionReason::InconsistentReads { .. }
        ));
    }

    #[test]
    fn unacknowledged_bodies_are_checked_by_their_filler() {
        let (ledger, mut stored) = clean_run();
        stored.push((1, 1, id(5, 0)));
        stored.push((1, 2, id(5, 1)));
        let mut observed = bodies(&stored);
        observed[5].2[63] ^= 0x80; // damaged, and no ledger entry to compare with
        observed.push((1, 3, vec![1, 2, 3])); // not a load generator body at all
        let report = verify(ledger, &observed);
        assert!(!report.is_clean());
        assert_eq!(report.corrupted, 2);
        assert_eq!(
            report.corrupted_first[0].reason,
            CorruptionReason::FillerMismatch { id: id(5, 1) }
        );
        assert_eq!(
            report.corrupted_first[1].reason,
            CorruptionReason::Unrecognized
        );
        assert_eq!(report.unacknowledged, 1, "only the intact p5:0 counts");
    }

    #[test]
    fn a_producer_going_backwards_in_a_queue_is_out_of_order() {
        // Queue 0: p0:0, p0:2, p0:1, p0:3: one inversion (p0:1 after p0:2).
        let stored = vec![
            (0, 0, id(0, 0)),
            (0, 1, id(0, 2)),
            (0, 2, id(0, 1)),
            (0, 3, id(0, 3)),
        ];
        let entries = stored
            .iter()
            .map(|&(queue, offset, id)| entry(id, queue, offset))
            .collect();
        let report = verify(ledger(entries), &bodies(&stored));
        assert!(!report.is_clean());
        assert_eq!(report.out_of_order, 1);
        assert_eq!(
            report.out_of_order_first[0],
            OutOfOrder {
                id: id(0, 1),
                place: Place {
                    broker: BROKER.into(),
                    queue_id: 0,
                    queue_offset: 2
                },
                after: id(0, 2),
                after_offset: 1
            }
        );
        assert_eq!(
            (report.lost, report.corrupted, report.duplicated),
            (0, 0, 0)
        );
    }

    #[test]
    fn order_is_per_queue_and_per_producer() {
        // p0's sequence interleaves across two queues and with p1: all in order per queue.
        let stored = vec![
            (0, 0, id(0, 1)),
            (1, 0, id(0, 0)),
            (0, 1, id(1, 0)),
            (0, 2, id(0, 3)),
            (1, 1, id(0, 2)),
        ];
        let entries = stored
            .iter()
            .map(|&(queue, offset, id)| entry(id, queue, offset))
            .collect();
        let report = verify(ledger(entries), &bodies(&stored));
        assert!(report.is_clean(), "{report}");
    }

    #[test]
    fn messages_on_another_broker_are_another_place() {
        let (ledger, stored) = clean_run();
        let mut verification = Verification::new(ledger).unwrap();
        for (queue, offset, body) in bodies(&stored) {
            let broker = if queue == 1 { "broker-b" } else { BROKER };
            verification.observe(broker, QueueId(queue), QueueOffset(offset), &body);
        }
        let report = verification.finish();
        assert_eq!(report.corrupted, 1);
        assert!(matches!(
            &report.corrupted_first[0].reason,
            CorruptionReason::FoundElsewhere { .. }
        ));
        assert_eq!(report.corrupted_first[0].place.broker, "broker-b");
    }

    #[test]
    fn a_ledger_that_lists_a_message_twice_is_refused() {
        let twice = ledger(vec![entry(id(0, 0), 0, 0), entry(id(0, 0), 0, 1)]);
        assert!(Verification::new(twice)
            .unwrap_err()
            .to_string()
            .contains("listed twice"));
        let one_place = ledger(vec![entry(id(0, 0), 0, 0), entry(id(0, 1), 0, 0)]);
        assert!(Verification::new(one_place)
            .unwrap_err()
            .to_string()
            .contains("both acknowledged at broker-a/0@0"));
    }

    #[test]
    fn the_report_serializes_with_its_findings() {
        let (mut ledger, stored) = clean_run();
        let mut entries = ledger.entries().to_vec();
        entries.push(entry(id(2, 0), 1, 1));
        ledger = self::ledger(entries);
        let report = verify(ledger, &bodies(&stored));
        let value = serde_json::to_value(&report).unwrap();
        assert_eq!(value["lost"], 1);
        assert_eq!(value["lost_first"][0]["id"], "2:0");
        assert_eq!(value["lost_first"][0]["acknowledged_at"]["queue_id"], 1);
    }
}
