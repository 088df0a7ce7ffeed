//! Redials of known peers with a simulated clock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure panics with its location

use hearth_core::ids::PeerKey;
use hearth_sync::dial::{DialConfig, Dials};
use std::time::{Duration, Instant};

/// The simulated clock's origin: any instant will do, only offsets matter.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

const S: Duration = Duration::from_secs(1);

fn nobody(_: &PeerKey) -> bool {
    false
}

#[test]
fn failed_dials_back_off_exponentially_up_to_the_maximum() {
    let t0 = origin();
    let mut dials = Dials::new(DialConfig::default());
    let p = PeerKey([1; 32]);
    assert_eq!(dials.remember(p, ["a", "b", "a"], t0), vec!["a", "b"]);
    assert_eq!(dials.due(t0, nobody), vec![(p, vec!["a", "b"])]);
    // A dial in progress is not repeated.
    assert!(dials.due(t0 + 10 * S, nobody).is_empty());
    let mut now = t0;
    for (n, wait) in [2, 4, 8, 16, 32, 60, 60].into_iter().enumerate() {
        dials.failed(&p, "refused".into(), now);
        let (_, d) = dials.iter().next().unwrap();
        assert_eq!(d.failures(), u32::try_from(n).unwrap() + 1);
        assert_eq!(d.last_error(), Some("refused"));
        assert!(
            dials
                .due(now + wait * S - Duration::from_millis(1), nobody)
                .is_empty()
        );
        assert_eq!(
            dials.due(now + wait * S, nobody).len(),
            1,
            "after failure {n}"
        );
        now += wait * S;
    }
    // A connection forgets the failures; losing it redials after the minimum.
    dials.connected(&p, now);
    assert_eq!(dials.iter().next().unwrap().1.failures(), 0);
    assert!(dials.due(now + 120 * S, |_| true).is_empty());
    dials.disconnected(&p, now);
    assert_eq!(dials.due(now + S, nobody).len(), 1);
    // The user asking again dials at once.
    dials.failed(&p, "refused".into(), now);
    dials.retry_now(&p, now);
    assert_eq!(dials.due(now, nobody).len(), 1);
}

#[test]
fn the_table_is_bounded() {
    let t0 = origin();
    let mut dials = Dials::new(DialConfig {
        max_known: 2,
        max_addrs: 3,
        ..DialConfig::default()
    });
    for i in 0..5u8 {
        dials.remember(PeerKey([i; 32]), 0..10, t0);
    }
    assert_eq!(dials.peers().count(), 2);
    assert!(dials.iter().all(|(_, d)| d.addrs() == [0, 1, 2]));
    // A peer without an address is known but never dialled.
    let mut empty = Dials::<u8>::new(DialConfig::default());
    empty.remember(PeerKey([9; 32]), [], t0);
    assert!(empty.contains(&PeerKey([9; 32])));
    assert!(empty.due(t0, nobody).is_empty());
}

#[test]
fn a_connection_with_a_known_peer_wakes_the_failing_ones_a_strangers_does_not() {
    let t0 = origin();
    let config = DialConfig {
        wake_max: 2,
        ..DialConfig::default()
    };
    let mut dials = Dials::new(config);
    let peers: Vec<PeerKey> = (1..=4).map(|i| PeerKey([i; 32])).collect();
    for p in &peers {
        dials.remember(*p, ["addr"], t0);
    }
    assert_eq!(dials.due(t0, nobody).len(), 4);
    // The network goes: every dial fails, some more often than others, and each peer waits
    // out its backoff (at most a minute).
    let mut now = t0;
    for (i, p) in peers.iter().enumerate() {
        for _ in 0..=i {
            dials.failed(p, "unreachable".into(), now);
        }
    }
    now += 3 * S;
    let woken = |d: &mut Dials<&str>, at| {
        let mut v: Vec<PeerKey> = d.due(at, nobody).into_iter().map(|(p, _)| p).collect();
        v.sort_by_key(|p| p.0[0]);
        v
    };
    // Peer 1 waited 2 s: due again at 3 s (its dial now in progress); the rest still wait.
    assert_eq!(woken(&mut dials, now), vec![peers[0]]);
    // A stranger's connection wakes nobody.
    dials.connected(&PeerKey([9; 32]), now);
    assert!(woken(&mut dials, now).is_empty());
    // Peer 1 answers: the network is back. The two others with the fewest failures are
    // dialled at once, not at the end of their backoff.
    dials.connected(&peers[0], now);
    assert_eq!(woken(&mut dials, now), vec![peers[1], peers[2]]);
    // At most once every `wake_every`: another connection soon after wakes no one more.
    dials.failed(&peers[1], "unreachable".into(), now);
    dials.connected(&peers[2], now + S);
    assert!(woken(&mut dials, now + S).is_empty());
    // After it, the next connection wakes the one still waiting (peer 4, whose backoff runs
    // to 16 s), beside peer 2, whose own backoff has ended by then.
    let later = now + DialConfig::default().wake_every;
    dials.connected(&peers[2], later);
    assert_eq!(woken(&mut dials, later), vec![peers[1], peers[3]]);
}
