//! Where an edit's delay goes: the moments the live nodes mark as a pushed edit passes through
//! them ([`hearth_node::live::EDIT_STAGES`]), recorded by a tracing layer of this process and
//! turned into the time each part took (`live.edit_part_*`).
//!
//! The layer is installed for every module but records only while [`record`] is on (the
//! `live` module's edits); each mark costs a clock read and a short push, about a microsecond
//! against an edit's millisecond.

use crate::measure::{ms, quantile};
use crate::report::{Figure, Report};
use anyhow::{Result, ensure};
use hearth_node::live::EDIT_STAGES;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tracing::field::{Field, Visit};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer};

/// The stages the nodes mark, in the order an edit passes them.
const STAGES: [&str; 6] = [
    "changed", "announce", "sent", "received", "storing", "stored",
];

static RECORDING: AtomicBool = AtomicBool::new(false);
static MARKS: Mutex<Vec<(usize, Instant)>> = Mutex::new(Vec::new());

/// The layer to install (with its filter: the stages' target only).
pub(crate) fn layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    Marks.with_filter(Targets::new().with_target(EDIT_STAGES, LevelFilter::TRACE))
}

/// Starts or stops recording marks.
pub(crate) fn record(on: bool) {
    RECORDING.store(on, Ordering::SeqCst);
}

/// The marks recorded since the last call, each stage's first at or after `since` (by its
/// index in [`STAGES`]).
fn take(since: Instant) -> [Option<Instant>; STAGES.len()] {
    let mut out = [None; STAGES.len()];
    let marks = std::mem::take(&mut *MARKS.lock().unwrap_or_else(|e| e.into_inner()));
    for (i, at) in marks {
        if at >= since {
            out[i].get_or_insert(at);
        }
    }
    out
}

struct Marks;

impl<S: tracing::Subscriber> Layer<S> for Marks {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if !RECORDING.load(Ordering::Relaxed) {
            return;
        }
        let at = Instant::now();
        let mut stage = StageField(None);
        event.record(&mut stage);
        if let Some(i) = stage.0 {
            MARKS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((i, at));
        }
    }
}

/// The `stage` field, as its index in [`STAGES`].
struct StageField(Option<usize>);

impl Visit for StageField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "stage" {
            self.0 = STAGES.iter().position(|s| *s == value);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// One edit's moments: those the benchmark took itself and those the nodes marked.
pub(crate) struct Edit {
    /// The command started.
    pub(crate) start: Instant,
    /// The patient's durable add returned.
    pub(crate) added: Instant,
    /// The benchmark saw the GP's arrival count move.
    pub(crate) seen: Instant,
}

/// The parts of each edit, collected over the run.
#[derive(Default)]
pub(crate) struct Parts(Vec<[f64; PARTS.len()]>);

/// Each part: its figure's name, and the moments (as indices into an edit's moments, see
/// [`Parts::add`]) it runs between.
const PARTS: [(&str, usize, usize); 7] = [
    ("change_check", 1, 2),
    ("to_driver", 2, 3),
    ("to_swarm", 3, 4),
    ("network", 4, 5),
    ("to_store_job", 5, 6),
    ("grantee_store", 6, 7),
    ("to_reader", 7, 8),
];

impl Parts {
    /// Takes the marks the nodes made during `edit`; an edit missing one (a mark lost to a
    /// background round's, say) is left out.
    pub(crate) fn add(&mut self, edit: &Edit) {
        let marked = take(edit.start);
        // The change check's end is the moment it hands the change to the driver, which the
        // node marks: the command's own return can come later (its thread is often not
        // scheduled again before the woken driver has announced the change).
        let mut moments = vec![Some(edit.start), Some(edit.added)];
        moments.extend(marked);
        moments.push(Some(edit.seen));
        let Some(moments) = moments.into_iter().collect::<Option<Vec<Instant>>>() else {
            return;
        };
        if moments.windows(2).any(|w| w[1] < w[0]) {
            return;
        }
        self.0
            .push(PARTS.map(|(_, a, b)| ms(moments[b] - moments[a])));
    }

    /// Each part's median over the edits kept, as `live.edit_part_<name>_median`.
    pub(crate) fn emit(self, r: &mut Report, edits: usize) -> Result<()> {
        // A stage the nodes no longer mark would leave every edit out.
        ensure!(
            self.0.len() * 2 >= edits,
            "only {} of {edits} edits passed every stage the nodes mark ({STAGES:?})",
            self.0.len()
        );
        for (i, (name, _, _)) in PARTS.iter().enumerate() {
            let mut v: Vec<f64> = self.0.iter().map(|p| p[i]).collect();
            r.emit(Figure::new(
                format!("edit_part_{name}_median"),
                quantile(&mut v, 0.5),
                "ms",
            ))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_log::log;

    /// The benchmark's subscriber, with the stages' layer wanting `TRACE` events of one
    /// target, still records those while `log` records (yamux's, sled's) pass only up to the
    /// level the daemon's own filter lets through: otherwise every `log::trace!` of yamux, for
    /// every frame, would be checked against the filters, work the daemon never does, and the
    /// benchmark's edits would be the slower for it.
    #[test]
    fn the_stages_are_recorded_and_log_records_stop_at_the_daemons_level() {
        hearth_node::logs::init_discarded_with(layer());
        assert_eq!(log::max_level(), log::LevelFilter::Info);
        assert!(!log::log_enabled!(target: "yamux::connection", log::Level::Trace));
        let since = Instant::now();
        record(true);
        tracing::trace!(target: EDIT_STAGES, stage = "sent");
        record(false);
        tracing::trace!(target: EDIT_STAGES, stage = "received");
        let marked = take(since);
        assert!(
            marked[2].is_some(),
            "a stage marked while recording is kept"
        );
        assert!(marked[3].is_none(), "nothing is kept while not recording");
    }
}
