//! Hand-off: a delivery written already leased to this process's relay.
//!
//! A relay that claims its deliveries pays a write per batch for the claim
//! (under SQLite's one write gate, and a transaction on PostgreSQL) on top
//! of the completion that wrote them and the settle that ends them. When the
//! relay of a destination runs in the process that completes the event and
//! has a free slot, the completion transaction itself leases the new row to
//! it — the same lease a claim would take, under the same order and pause
//! conditions (`Store::complete_batch_handing_off`) — and after the commit
//! the delivery is passed to the relay in memory.
//!
//! The slot is reserved before the transaction (one permit of the relay's
//! `concurrency` semaphore per delivery), so a hand-off never puts more than
//! `concurrency` attempts in flight. Nothing here is needed for safety: a
//! handed-off delivery that never reaches its relay (the process dies, the
//! relay stopped) is a leased row whose lease runs out, and any relay then
//! claims it and sends it with the same `webhook-id`, as after a crash
//! mid-attempt. Relays driven by hand (`run_once`, `drain`) never open a
//! desk, so tests that drive them see every delivery through a claim.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::store::deliveries::ClaimedDelivery;

/// A delivery leased to a relay by its completion, with the slot reserved
/// for it (released when the attempt ends).
pub struct HandedOff {
    pub delivery: ClaimedDelivery,
    pub slot: OwnedSemaphorePermit,
}

/// Where a running relay takes hand-offs: its slots and its in-tray.
struct Desk {
    slots: Arc<Semaphore>,
    tray: mpsc::UnboundedSender<HandedOff>,
}

/// The desks of this process's running relays, by destination; shared by
/// the worker (which reserves and hands off) and the relays (which open
/// and close their desks). Cheap to clone.
#[derive(Clone, Default)]
pub struct Handoffs {
    desks: Arc<Mutex<HashMap<String, Desk>>>,
}

/// A relay's open desk; dropping it closes the desk (no new reservations).
pub struct OpenDesk {
    handoffs: Handoffs,
    destination: String,
    tray: mpsc::UnboundedSender<HandedOff>,
}

impl Drop for OpenDesk {
    fn drop(&mut self) {
        let mut desks = self.handoffs.lock();
        // Only this desk: a relay started again may have opened a new one.
        if desks
            .get(&self.destination)
            .is_some_and(|d| d.tray.same_channel(&self.tray))
        {
            desks.remove(&self.destination);
        }
    }
}

/// Slots reserved for one completion batch, by destination.
#[derive(Default)]
pub struct Reservation {
    slots: HashMap<String, (Vec<OwnedSemaphorePermit>, mpsc::UnboundedSender<HandedOff>)>,
}

impl Handoffs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Desk>> {
        self.desks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens `destination`'s desk: completions may lease deliveries to it
    /// while `slots` has permits, and send them to `tray`.
    pub fn open(
        &self,
        destination: &str,
        slots: Arc<Semaphore>,
        tray: mpsc::UnboundedSender<HandedOff>,
    ) -> OpenDesk {
        self.lock().insert(
            destination.to_owned(),
            Desk {
                slots,
                tray: tray.clone(),
            },
        );
        OpenDesk {
            handoffs: self.clone(),
            destination: destination.to_owned(),
            tray,
        }
    }

    /// Whether `destination`'s relay has an open desk (its loop is running).
    pub fn is_open(&self, destination: &str) -> bool {
        self.lock().contains_key(destination)
    }

    /// Reserves up to `wanted[d]` free slots of each destination `d` whose
    /// relay has an open desk; fewer (or none) when fewer are free.
    pub fn reserve(&self, wanted: &HashMap<&str, usize>) -> Reservation {
        let desks = self.lock();
        let mut reservation = Reservation::default();
        for (&destination, &count) in wanted {
            let Some(desk) = desks.get(destination) else {
                continue;
            };
            let permits: Vec<OwnedSemaphorePermit> = (0..count)
                .map_while(|_| desk.slots.clone().try_acquire_owned().ok())
                .collect();
            if !permits.is_empty() {
                reservation
                    .slots
                    .insert(destination.to_owned(), (permits, desk.tray.clone()));
            }
        }
        reservation
    }
}

impl Reservation {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// How many deliveries to each destination may be handed off.
    pub fn counts(&self) -> HashMap<&str, usize> {
        self.slots
            .iter()
            .map(|(name, (permits, _))| (name.as_str(), permits.len()))
            .collect()
    }

    /// Passes each delivery the completion leased to its relay, with one
    /// reserved slot; unused slots are freed. Answers the deliveries no
    /// relay took (its desk closed meanwhile): the caller releases them
    /// rather than leave them to their lease's expiry.
    pub fn deliver(mut self, leased: Vec<ClaimedDelivery>) -> Vec<ClaimedDelivery> {
        let mut untaken = Vec::new();
        for delivery in leased {
            let Some((permits, tray)) = self.slots.get_mut(&delivery.destination) else {
                untaken.push(delivery);
                continue;
            };
            let Some(slot) = permits.pop() else {
                untaken.push(delivery);
                continue;
            };
            if let Err(mpsc::error::SendError(back)) = tray.send(HandedOff { delivery, slot }) {
                untaken.push(back.delivery);
            }
        }
        untaken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leased(id: i64, destination: &str) -> ClaimedDelivery {
        ClaimedDelivery {
            id,
            event_id: id,
            destination: destination.into(),
            replay: 0,
            source: "s".into(),
            action: None,
            object_type: None,
            object_id: None,
            body: "{}".into(),
            attempts: 1,
            lease_token: 7,
        }
    }

    #[test]
    fn a_reservation_takes_only_free_slots_of_open_desks() {
        let handoffs = Handoffs::default();
        let slots = Arc::new(Semaphore::new(2));
        let (tray, mut inbox) = mpsc::unbounded_channel();
        let desk = handoffs.open("a", slots.clone(), tray);
        let wanted = HashMap::from([("a", 3), ("closed", 5)]);
        let reservation = handoffs.reserve(&wanted);
        assert_eq!(reservation.counts(), HashMap::from([("a", 2)]));
        assert_eq!(slots.available_permits(), 0);
        // Two leased, one of them to a destination without a desk.
        let untaken = reservation.deliver(vec![leased(1, "a"), leased(2, "closed")]);
        assert_eq!(untaken.iter().map(|d| d.id).collect::<Vec<_>>(), vec![2]);
        let handed = inbox.try_recv().expect("the relay got its delivery");
        assert_eq!(handed.delivery.id, 1);
        // The unused slot came back; the used one is held by the attempt.
        assert_eq!(slots.available_permits(), 1);
        drop(handed);
        assert_eq!(slots.available_permits(), 2);
        drop(desk);
        assert!(
            handoffs.reserve(&wanted).is_empty(),
            "a closed desk takes nothing"
        );
    }

    #[test]
    fn a_delivery_for_a_relay_that_stopped_comes_back() {
        let handoffs = Handoffs::default();
        let slots = Arc::new(Semaphore::new(4));
        let (tray, inbox) = mpsc::unbounded_channel();
        let desk = handoffs.open("a", slots.clone(), tray);
        let reservation = handoffs.reserve(&HashMap::from([("a", 1)]));
        drop(inbox);
        drop(desk);
        let untaken = reservation.deliver(vec![leased(9, "a")]);
        assert_eq!(untaken.len(), 1);
        assert_eq!(slots.available_permits(), 4, "its slot is free again");
    }

    #[test]
    fn closing_an_old_desk_leaves_a_newer_one_open() {
        let handoffs = Handoffs::default();
        let (old_tray, _old) = mpsc::unbounded_channel();
        let old = handoffs.open("a", Arc::new(Semaphore::new(1)), old_tray);
        let (new_tray, _new) = mpsc::unbounded_channel();
        let _new_desk = handoffs.open("a", Arc::new(Semaphore::new(1)), new_tray);
        drop(old);
        assert!(!handoffs.reserve(&HashMap::from([("a", 1)])).is_empty());
    }
}
