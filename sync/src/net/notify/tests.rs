//! The notify streams between two in-memory swarms: what crosses, and what a reader refuses.

use super::*;
use crate::net::codec::write_frame;
use crate::net::tests::Msg;
use crate::net::{Behaviour, BehaviourEvent, NetConfig, keypair, memory_swarm};
use futures::{AsyncReadExt, AsyncWriteExt};
use hearth_core::keys::{Identity, Role};
use hearth_core::test_utils::TestRng;
use libp2p::Swarm;
use libp2p::swarm::SwarmEvent;

/// The test message of the behaviour's tests (one starting with 0xff does not decode); one
/// starting with 0xfe is not a `Notify`.
impl IsNotify for Msg {
    fn is_notify(&self) -> bool {
        self.0.first() != Some(&0xfe)
    }
}

/// One side of a connected pair: its stream control, its inbound limits, its peer id; its
/// swarm runs in a task of its own until the side is dropped.
struct Side {
    control: libp2p_stream::Control,
    inbound: Inbound,
    id: PeerId,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Side {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn swarm(seed: u64, config: &NetConfig) -> Swarm<Behaviour<Msg>> {
    let id = Identity::generate(Role::Professional, "t".into(), &mut TestRng::new(seed)).0;
    memory_swarm(keypair(&id).unwrap(), config).unwrap()
}

fn side(swarm: Swarm<Behaviour<Msg>>) -> Side {
    let mut swarm = swarm;
    let control = swarm.behaviour().notify.new_control();
    let inbound = swarm.behaviour().gate.inbound().clone();
    let id = *swarm.local_peer_id();
    let task = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    Side {
        control,
        inbound,
        id,
        task,
    }
}

/// A server with `config` and a client, connected: (server, client).
async fn connected(config: &NetConfig, port: u64) -> (Side, Side) {
    let mut server = swarm(port, config);
    let mut client = swarm(port + 1000, &NetConfig::default());
    server
        .listen_on(format!("/memory/{port}").parse().unwrap())
        .unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            break address;
        }
    };
    let server_id = *server.local_peer_id();
    client
        .dial(addr.with(libp2p::multiaddr::Protocol::P2p(server_id)))
        .unwrap();
    loop {
        tokio::select! {
            ev = client.select_next_some() => if let SwarmEvent::ConnectionEstablished { .. } = ev { break },
            ev = server.select_next_some() => { let _: SwarmEvent<BehaviourEvent<Msg>> = ev; }
        }
    }
    (side(server), side(client))
}

/// A server with `config` reading notify streams, and a client: (server, client, the
/// server's receiver, the client's sender).
async fn notifying(
    config: &NetConfig,
    port: u64,
) -> (Side, Side, NotifyReceiver<Msg>, NotifySender<Msg>) {
    let (mut server, client) = connected(config, port).await;
    let receiver = NotifyReceiver::start(&mut server.control, server.inbound.clone());
    let sender = NotifySender::new(client.control.clone(), client.inbound.notify_limits());
    (server, client, receiver, sender)
}

/// The next `n` messages `receiver` gets (failing after a generous wait).
async fn received_n(receiver: &mut NotifyReceiver<Msg>, n: usize) -> Vec<(PeerId, Msg)> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
            .await
            .expect("the messages arrived")
            .expect("the receiver runs");
        got.push(m);
    }
    got
}

/// What `receiver` gets within `wait`.
async fn received(receiver: &mut NotifyReceiver<Msg>, wait: Duration) -> Vec<(PeerId, Msg)> {
    let mut got = Vec::new();
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            m = receiver.recv() => match m {
                Some(m) => got.push(m),
                None => return got,
            },
            _ = &mut deadline => return got,
        }
    }
}

#[tokio::test]
async fn notify_messages_cross_one_stream_in_order_from_the_authenticated_peer() {
    let (mut server, client, mut receiver, mut sender) =
        notifying(&NetConfig::default(), 42_001).await;
    // A peer known to a record here (a stranger may have only two messages waiting).
    server.inbound.set_known([client.id]);
    for i in 1..=3u8 {
        sender.send(server.id, Msg(vec![i; 100])).unwrap();
    }
    let got = received_n(&mut receiver, 3).await;
    let want: Vec<(PeerId, Msg)> = (1..=3u8).map(|i| (client.id, Msg(vec![i; 100]))).collect();
    assert_eq!(got, want);
    // A second receiver on the same swarm receives nothing (the protocol is taken).
    let mut second = NotifyReceiver::<Msg>::start(&mut server.control, server.inbound.clone());
    assert!(second.recv().await.is_none());
}

#[tokio::test]
async fn a_message_other_than_notify_or_one_that_does_not_decode_closes_its_stream_undelivered() {
    let (server, client, mut receiver, mut sender) = notifying(&NetConfig::default(), 42_002).await;
    sender.send(server.id, Msg(vec![0xfe, 1])).unwrap();
    assert!(
        received(&mut receiver, Duration::from_millis(300))
            .await
            .is_empty()
    );
    let mut other = NotifySender::new(client.control.clone(), client.inbound.notify_limits());
    other.send(server.id, Msg(vec![0xff, 1])).unwrap();
    assert!(
        received(&mut receiver, Duration::from_millis(300))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_strangers_frame_above_its_limit_is_refused_before_its_body_is_read() {
    let config = NetConfig {
        max_frame_unknown: 1024,
        ..NetConfig::default()
    };
    let (server, client, mut receiver, mut sender) = notifying(&config, 42_003).await;
    sender.send(server.id, Msg(vec![1; 2048])).unwrap();
    assert!(
        received(&mut receiver, Duration::from_millis(300))
            .await
            .is_empty()
    );
    // Once the client is known to a record here, the same frame is taken (on a new stream:
    // the first was closed).
    server.inbound.set_known([client.id]);
    let mut control = client.control.clone();
    let mut stream = control
        .open_stream(server.id, NOTIFY_PROTOCOL)
        .await
        .unwrap();
    write_frame(&mut stream, &[1; 2048], 1 << 20).await.unwrap();
    let got = received_n(&mut receiver, 1).await;
    assert_eq!(got, [(client.id, Msg(vec![1; 2048]))]);
}

#[tokio::test]
async fn streams_beyond_a_peers_share_are_closed_at_once() {
    let config = NetConfig {
        max_established_per_peer: 2,
        ..NetConfig::default()
    };
    let (server, client, mut receiver, _) = notifying(&config, 42_004).await;
    let mut control = client.control.clone();
    let mut streams = Vec::new();
    for i in 1..=3u8 {
        let mut s = control
            .open_stream(server.id, NOTIFY_PROTOCOL)
            .await
            .unwrap();
        // The stream reaches the server with its first bytes.
        let _ = write_frame(&mut s, &[i], 1 << 20).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        streams.push(s);
    }
    // Two streams were taken (whichever reached the server first) and signed ready; the
    // third was closed without its sign, and what came on it was not read.
    let mut got = received_n(&mut receiver, 2).await;
    got.sort_by(|a, b| a.1.0.cmp(&b.1.0));
    let mut taken = Vec::new();
    let mut refused = Vec::new();
    for mut s in streams {
        let mut sign = [0u8; 1];
        match s.read_exact(&mut sign).await {
            Ok(()) => taken.push(s),
            Err(_) => refused.push(s),
        }
    }
    assert_eq!((taken.len(), refused.len()), (2, 1));
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(p, _)| *p == client.id));
    assert_ne!(got[0].1, got[1].1);
    assert!(
        received(&mut receiver, Duration::from_millis(200))
            .await
            .is_empty()
    );
    // A stream closed gives its place back.
    taken.remove(0).close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = control
        .open_stream(server.id, NOTIFY_PROTOCOL)
        .await
        .unwrap();
    write_frame(&mut again, &[9], 1 << 20).await.unwrap();
    let got = received_n(&mut receiver, 1).await;
    assert_eq!(got, [(client.id, Msg(vec![9]))]);
}

#[tokio::test]
async fn a_frame_whose_body_dawdles_past_the_timeout_closes_its_stream() {
    let config = NetConfig {
        request_timeout: Duration::from_millis(200),
        ..NetConfig::default()
    };
    let (server, client, mut receiver, _) = notifying(&config, 42_005).await;
    let mut control = client.control.clone();
    let mut stream = control
        .open_stream(server.id, NOTIFY_PROTOCOL)
        .await
        .unwrap();
    // Ten bytes announced, three sent; the rest after the timeout.
    stream.write_all(&10u32.to_be_bytes()).await.unwrap();
    stream.write_all(&[1, 2, 3]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = stream.write_all(&[4; 7]).await;
    let _ = stream.flush().await;
    assert!(
        received(&mut receiver, Duration::from_millis(300))
            .await
            .is_empty()
    );
    // Its admission was given back.
    assert_eq!(server.inbound.in_flight(), 0);
}

#[tokio::test]
async fn messages_for_a_peer_without_the_protocol_come_back_to_go_by_request() {
    let (server, client) = connected(&NetConfig::default(), 42_006).await;
    // The server accepts no notify streams.
    let mut sender =
        NotifySender::<Msg>::new(client.control.clone(), client.inbound.notify_limits());
    sender.send(server.id, Msg(vec![1])).unwrap();
    sender.send(server.id, Msg(vec![2])).unwrap();
    let mut back = Vec::new();
    while back.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(5), sender.returned())
            .await
            .expect("the messages came back")
            .unwrap();
        back.push(m);
    }
    assert_eq!(back, [(server.id, Msg(vec![1])), (server.id, Msg(vec![2]))]);
    // A message its peer's queue cannot take comes back at once.
    let mut full = NotifySender::<Msg>::new(client.control.clone(), client.inbound.notify_limits());
    let mut refused = 0;
    for i in 0..(QUEUED_PER_PEER + 8) {
        if full.send(server.id, Msg(vec![i as u8])).is_err() {
            refused += 1;
        }
    }
    assert!(refused > 0, "a full queue took every message");
}

#[tokio::test]
async fn a_message_waiting_for_the_driver_holds_its_frames_admission() {
    let (server, _client, mut receiver, mut sender) =
        notifying(&NetConfig::default(), 42_007).await;
    sender.send(server.id, Msg(vec![1; 1000])).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.inbound.in_flight() != 1000 {
        assert!(tokio::time::Instant::now() < deadline, "never admitted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Read, and still counted until the driver takes it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.inbound.in_flight(), 1000);
    assert!(receiver.recv().await.is_some());
    assert_eq!(server.inbound.in_flight(), 0);
}

#[tokio::test]
async fn a_peer_that_takes_the_stream_but_never_reads_gets_its_messages_by_request() {
    let (mut server, client) = connected(&NetConfig::default(), 42_008).await;
    // The server takes the stream, signs it ready, and reads nothing.
    let mut incoming = server.control.accept(NOTIFY_PROTOCOL).unwrap();
    let held = tokio::spawn(async move {
        let (_, mut s) = incoming.next().await.unwrap();
        s.write_all(&[READY]).await.unwrap();
        s.flush().await.unwrap();
        std::future::pending::<()>().await;
        drop(s);
    });
    let limits = NotifyLimits {
        frame_timeout: Duration::from_millis(300),
        ..client.inbound.notify_limits()
    };
    let mut sender = NotifySender::<Msg>::new(client.control.clone(), limits);
    // More than the stream's window: the write cannot finish.
    let big = Msg(vec![1; 1 << 20]);
    sender.send(server.id, big.clone()).unwrap();
    let back = tokio::time::timeout(Duration::from_secs(5), sender.returned())
        .await
        .expect("the unread message came back")
        .unwrap();
    assert_eq!(back, (server.id, big));
    // The peer is given up for streams: the next message comes back at once.
    sender.send(server.id, Msg(vec![2])).unwrap();
    let back = tokio::time::timeout(Duration::from_millis(200), sender.returned())
        .await
        .expect("the next message came back at once")
        .unwrap();
    assert_eq!(back, (server.id, Msg(vec![2])));
    held.abort();
}
