//! An area: relays, patients and professionals, grown in steps, in one process.
//!
//! The full run grows one area through 1,000 → 2,500 → 5,000 → 10,000 patients, with 2, 3,
//! 5 and 10 relays (the acute trust's, then one per GP practice) and professionals in
//! proportion (39 per practice, a hospital specialist per 100 patients and an A&E clinician
//! per 200: 501 at 10,000). Each patient's record (3 notes) is built on its own node, with
//! real keys, signatures and key wraps; the grant pattern is in [`model`]. Each step:
//!
//! - **in process, through the wire encoding** (as the `relay` and `sync` modules do): every
//!   new patient's node supplies its relays (`Local::relay_start` / `on_relay_response`
//!   against the relay's [`Server::answer`](hearth_sync::relay::server::Server::answer) on a
//!   sled store on disk), and each grantee fetches the record once from the practice's relay.
//!   Thousands of patients' nodes each with a libp2p swarm would measure the swarms, not the
//!   relays: these phases time the relays' own work, frame by frame;
//! - **over libp2p** (in-memory transport, Noise, Yamux, the node's own behaviour): the
//!   relays form their Kademlia network and announce every record they keep; an A&E
//!   clinician looks up records' relays; patients' edits reach their relays and online
//!   grantees (the `net` and `phases` modules).
//!
//! Figures per step, named with the step's size: relay load (busiest relay against the mean),
//! the relays' rates against the first step's, announcements, lookups against one exchange
//! with a relay already known, fan-out against the time to reach the relays alone, memory.
//! `--quick`: 150 → 300 patients, 2 → 3 relays. `HEARTH_BENCH_AREA_STEPS` (such as
//! `1000:2,2500:3`) sets the steps.

mod model;
mod net;
mod phases;

use crate::measure::{median, ms, rss_kib, size_label};
use crate::report::{Figure, Report};
use anyhow::{Context, Result};
use model::{Area, Load};
use std::time::Instant;

/// (patients, relays) of each step.
fn steps(quick: bool) -> Result<Vec<(usize, usize)>> {
    if let Ok(text) = std::env::var("HEARTH_BENCH_AREA_STEPS") {
        return text
            .split(',')
            .map(|s| {
                let (p, r) = s.split_once(':').context("a step is PATIENTS:RELAYS")?;
                Ok((p.trim().parse()?, r.trim().parse::<usize>()?.max(2)))
            })
            .collect();
    }
    Ok(if quick {
        vec![(150, 2), (300, 3)]
    } else {
        vec![(1_000, 2), (2_500, 3), (5_000, 5), (10_000, 10)]
    })
}

/// The largest value of `v` and the mean.
fn busiest(v: &[f64]) -> (f64, f64) {
    let max = v.iter().copied().fold(0.0, f64::max);
    (max, v.iter().sum::<f64>() / v.len().max(1) as f64)
}

/// Adds `more` to `total`, relay by relay.
fn accumulate(total: &mut Vec<Load>, more: &[Load]) {
    total.resize(more.len().max(total.len()), Load::default());
    for (t, m) in total.iter_mut().zip(more) {
        t.requests += m.requests;
        t.busy += m.busy;
        t.stored += m.stored;
        t.sent += m.sent;
        t.bytes += m.bytes;
    }
}

/// Requests per second of relay time over `loads`.
fn rate(loads: &[Load]) -> f64 {
    let n: usize = loads.iter().map(|l| l.requests).sum();
    let busy: f64 = loads.iter().map(|l| l.busy.as_secs_f64()).sum();
    n as f64 / busy.max(1e-9)
}

/// The first step's rates: the same-run baselines of the later steps.
struct First {
    supply_rate: f64,
    serve_rate: f64,
    announce_rate: f64,
}

/// Runs the module.
pub(crate) fn run(r: &mut Report, quick: bool) -> Result<()> {
    let steps = steps(quick)?;
    let (n_lookups, n_edits) = if quick { (5, 2) } else { (40, 10) };
    let rt = crate::measure::runtime()?;
    let mut area = Area::new()?;
    let (mut stored_total, mut served_total) = (Vec::new(), Vec::new());
    let mut first: Option<First> = None;
    let started = Instant::now();
    for (n, relays) in steps {
        let t = Instant::now();
        let l = size_label(n);
        let before = area.patients.len();
        area.grow_organisations(relays, n)?;
        let keep: Vec<usize> = (0..n_edits)
            .map(|i| before + (i * (n - before)) / n_edits)
            .collect();
        let (stored, served, building) = area.grow_patients(n, &keep)?;
        accumulate(&mut stored_total, &stored);
        accumulate(&mut served_total, &served);
        let grown = t.elapsed();
        eprintln!(
            "  ({n} patients, {} relays, {} professionals: {} new records built in {:.1} s, supplied and fetched in {:.1} s)",
            area.relays.len(),
            area.pros.len(),
            n - before,
            building.as_secs_f64(),
            (grown - building).as_secs_f64()
        );

        // Relay load, cumulative: what each relay keeps and has served.
        let mut records = vec![0.0; area.relays.len()];
        for p in &area.patients {
            for &x in &p.relays {
                records[x] += 1.0;
            }
        }
        let per = |f: &dyn Fn(&Load) -> f64, v: &[Load]| -> Vec<f64> { v.iter().map(f).collect() };
        let mib = |v: Vec<u64>| -> Vec<f64> {
            v.into_iter()
                .map(|b| b as f64 / (1024.0 * 1024.0))
                .collect()
        };
        let list: Vec<String> = records.iter().map(|x| format!("{x:.0}")).collect();
        eprintln!(
            "  (records per relay, the trust's first: {})",
            list.join(", ")
        );
        let store = mib(area.stored_bytes()?);
        let disk = mib(area.disk()?);
        for (name, unit, v) in [
            ("relay_records", "records", records),
            (
                "relay_bundles",
                "bundles",
                per(&|x: &Load| x.stored as f64, &stored_total),
            ),
            ("relay_store", "MiB", store),
            ("relay_disk", "MiB", disk),
            (
                "relay_fetches_served",
                "requests",
                per(&|x: &Load| x.requests as f64, &served_total),
            ),
        ] {
            let (max, mean) = busiest(&v);
            r.emit(Figure::new(format!("{name}_busiest_{l}"), max, unit).baseline(mean))?;
        }
        area_parties(r, &area, &l)?;

        // The relays' rates on this step's new records.
        let supply_rate = rate(&stored);
        let serve_rate = rate(&served);
        let new_records: usize = area.patients[before..].iter().map(|p| p.relays.len()).sum();
        r.emit(Figure::new(
            format!("build_per_record_{l}"),
            ms(building) / (n - before).max(1) as f64,
            "ms",
        ))?;

        // Over libp2p. Memory first: the relays' stores and every node's keys (one process).
        let (rss_before, _) = rss_kib();
        let (relay_nodes, ann) = rt.block_on(phases::relay_network(&area))?;
        let (rss_network, _) = rss_kib();
        phases::check_peers(&area, &relay_nodes)?;
        let announce_rate = ann.announced as f64 / ann.took.as_secs_f64();
        let f = first.get_or_insert(First {
            supply_rate,
            serve_rate,
            announce_rate,
        });
        eprintln!(
            "  (relays' network formed in {:.0} ms; {} announcements in {:.2} s, {} failed)",
            ms(ann.formed),
            ann.announced,
            ann.took.as_secs_f64(),
            ann.failed
        );
        r.emit(
            Figure::new(format!("supply_requests_rate_{l}"), supply_rate, "/s")
                .baseline(f.supply_rate),
        )?;
        r.emit(
            Figure::new(format!("fetch_requests_rate_{l}"), serve_rate, "/s")
                .baseline(f.serve_rate),
        )?;
        r.emit(Figure::new(
            format!("supply_relay_ms_per_record_{l}"),
            stored.iter().map(|x| ms(x.busy)).sum::<f64>() / new_records.max(1) as f64,
            "ms",
        ))?;
        r.emit(
            Figure::new(format!("announce_rate_{l}"), announce_rate, "/s")
                .baseline(f.announce_rate),
        )?;
        r.emit(Figure::new(
            format!("announce_messages_per_record_{l}"),
            ann.messages as f64 / ann.announced.max(1) as f64,
            "messages",
        ))?;
        let (max, mean) = busiest(&ann.received.iter().map(|&x| x as f64).collect::<Vec<_>>());
        r.emit(
            Figure::new(
                format!("announcements_received_busiest_{l}"),
                max,
                "messages",
            )
            .baseline(mean),
        )?;
        let held = ann.held.iter().copied().min().unwrap_or(0);
        r.emit(
            Figure::new(
                format!("kad_records_known_least_{l}"),
                held as f64,
                "records",
            )
            .baseline(area.patients.len() as f64),
        )?;

        let look = rt.block_on(phases::lookups(&area, &relay_nodes, n_lookups))?;
        r.emit(
            Figure::new(format!("lookup_{l}"), median(look.times.clone()), "ms")
                .baseline(median(look.direct.clone())),
        )?;
        r.emit(Figure::new(
            format!("lookup_messages_{l}"),
            look.messages.iter().sum::<f64>() / look.messages.len().max(1) as f64,
            "messages",
        ))?;
        r.emit(Figure::new(
            format!("lookup_found_all_relays_{l}"),
            100.0 * look.complete as f64 / n_lookups as f64,
            "%",
        ))?;

        let edits = rt.block_on(phases::fanout(&mut area, &relay_nodes))?;
        fanout(r, &edits, &l)?;
        drop(relay_nodes);

        let (rss, _) = rss_kib();
        let mib = |kib: u64| kib as f64 / 1024.0;
        r.emit(Figure::new(
            format!("rss_records_{l}"),
            mib(rss_before),
            "MiB",
        ))?;
        r.emit(Figure::new(
            format!("rss_relay_network_{l}"),
            mib(rss_network.saturating_sub(rss_before)),
            "MiB",
        ))?;
        r.emit(Figure::new(format!("rss_{l}"), mib(rss), "MiB"))?;
        eprintln!(
            "  (step {n} took {:.1} s; {:.1} s so far)",
            t.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The busiest relay's parties (patients and distinct grantees on its access lists): the peers
/// that may connect to it, against the mean.
fn area_parties(r: &mut Report, area: &Area, l: &str) -> Result<()> {
    let mut parties = vec![std::collections::BTreeSet::new(); area.relays.len()];
    for (i, p) in area.patients.iter().enumerate() {
        for &x in &p.relays {
            parties[x].insert(i);
            for &g in &p.grantees {
                parties[x].insert(area.patients.len() + g);
            }
        }
    }
    let v: Vec<f64> = parties.iter().map(|s| s.len() as f64).collect();
    let (max, mean) = busiest(&v);
    r.emit(Figure::new(format!("relay_parties_busiest_{l}"), max, "peers").baseline(mean))
}

/// The fan-out figures of a step's edits.
fn fanout(r: &mut Report, edits: &[phases::Edit], l: &str) -> Result<()> {
    let n = edits.len().max(1) as f64;
    let mean = |f: &dyn Fn(&phases::Edit) -> f64| edits.iter().map(f).sum::<f64>() / n;
    r.emit(Figure::new(
        format!("fanout_receivers_{l}"),
        mean(&|e| e.receivers as f64),
        "nodes",
    ))?;
    r.emit(Figure::new(
        format!("fanout_online_grantees_{l}"),
        mean(&|e| e.online as f64),
        "nodes",
    ))?;
    r.emit(Figure::new(
        format!("fanout_exchanges_{l}"),
        mean(&|e| e.exchanges as f64),
        "messages",
    ))?;
    r.emit(Figure::new(
        format!("fanout_bytes_{l}"),
        mean(&|e| e.bytes as f64) / 1024.0,
        "KiB",
    ))?;
    let reached: Vec<f64> = edits.iter().map(|e| ms(e.to_grantees)).collect();
    let relays: Vec<f64> = edits.iter().map(|e| ms(e.to_relays)).collect();
    if !reached.is_empty() {
        r.emit(
            Figure::new(
                format!("fanout_to_online_grantees_{l}"),
                median(reached),
                "ms",
            )
            .baseline(median(relays)),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_is_the_largest_against_the_mean() {
        assert_eq!(busiest(&[1.0, 3.0, 2.0]), (3.0, 2.0));
        assert_eq!(busiest(&[]), (0.0, 0.0));
    }

    #[test]
    fn picks_stay_in_range_and_repeat_for_a_seed() {
        let mut a = model::Pick::new(4);
        let mut b = model::Pick::new(4);
        for _ in 0..1000 {
            let x = a.below(7);
            assert!(x < 7);
            assert_eq!(x, b.below(7));
        }
        let hits = (0..10_000).filter(|_| a.chance(300)).count();
        assert!((2_500..3_500).contains(&hits), "{hits}");
    }
}
