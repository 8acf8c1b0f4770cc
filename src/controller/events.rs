//! Events published beside the reconcile, not inside it, as client-go's event
//! broadcaster does: a pass queues its events and goes on; workers publish them through
//! kube-runtime's [`Recorder`] (which turns repeats into event series).
//!
//! Each object's events go through one lane (chosen by the object's UID), so they are
//! published in the order its passes queued them; the [`LANES`] lanes publish at once.
//! A lane holding [`LANE_CAPACITY`] unpublished events drops new ones with a warning
//! (the apiserver is not keeping up; the status still says everything an event does).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};
use tokio::sync::{mpsc, watch};
use tracing::warn;

/// Lanes publishing at once.
pub const LANES: usize = 8;

/// Unpublished events a lane holds before it drops new ones (client-go's broadcaster
/// holds 1,000 in all).
pub const LANE_CAPACITY: usize = 128;

/// One queued event and what it is about.
struct Queued {
    event: Event,
    about: ObjectReference,
}

/// The event queue of a controller (cheap to clone: clones share the lanes).
#[derive(Clone)]
pub struct Events {
    lanes: Arc<Vec<mpsc::Sender<Queued>>>,
    /// Events queued and not yet published (or dropped).
    unpublished: Arc<watch::Sender<usize>>,
}

impl Events {
    /// Starts the lanes' workers on the current tokio runtime, each publishing through
    /// a `Recorder` of its own for `reporter`. A `Recorder` keeps the events of the
    /// last minutes to turn repeats into series and scans them on every publish; an
    /// object's events all go through its lane, so each lane's `Recorder` holds only
    /// its share. The workers end when the last clone of the queue is dropped, after
    /// publishing what it held.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(client: &Client, reporter: &Reporter) -> Self {
        let unpublished = Arc::new(watch::Sender::new(0));
        let lanes = (0..LANES)
            .map(|_| {
                let (tx, rx) = mpsc::channel(LANE_CAPACITY);
                let recorder = Recorder::new(client.clone(), reporter.clone());
                tokio::spawn(publish_lane(rx, recorder, unpublished.clone()));
                tx
            })
            .collect();
        Self { lanes: Arc::new(lanes), unpublished }
    }

    /// Queues `event` about `about`; never waits. A full lane drops it with a warning.
    pub fn publish(&self, event: Event, about: ObjectReference) {
        let lane = &self.lanes[lane_of(&about)];
        let reason = event.reason.clone();
        self.unpublished.send_modify(|n| *n += 1);
        if lane.try_send(Queued { event, about }).is_err() {
            self.unpublished.send_modify(|n| *n -= 1);
            warn!(reason, "event dropped: {LANE_CAPACITY} events of this lane are waiting for the apiserver");
        }
    }

    /// Waits until every event queued so far is published (or failed and logged).
    pub async fn flush(&self) {
        let mut rx = self.unpublished.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// The lane of an object: by UID (by name without one), so an object keeps its lane.
fn lane_of(about: &ObjectReference) -> usize {
    let mut h = DefaultHasher::new();
    (about.uid.as_deref(), about.namespace.as_deref(), about.name.as_deref()).hash(&mut h);
    (h.finish() % LANES as u64) as usize
}

/// Publishes a lane's events in order until its queue closes; a failure is logged.
async fn publish_lane(mut rx: mpsc::Receiver<Queued>, recorder: Recorder, unpublished: Arc<watch::Sender<usize>>) {
    while let Some(q) = rx.recv().await {
        if let Err(e) = recorder.publish(&q.event, &q.about).await {
            warn!(error = %e, reason = q.event.reason, "could not publish event");
        }
        unpublished.send_modify(|n| *n -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about(uid: &str) -> ObjectReference {
        ObjectReference { uid: Some(uid.into()), name: Some("inv".into()), ..Default::default() }
    }

    #[test]
    fn an_object_keeps_its_lane_and_objects_spread_over_lanes() {
        assert_eq!(lane_of(&about("a")), lane_of(&about("a")));
        let used: std::collections::HashSet<_> = (0..64).map(|i| lane_of(&about(&format!("uid-{i}")))).collect();
        assert!(used.len() > LANES / 2, "64 objects use only lanes {used:?}");
    }
}
