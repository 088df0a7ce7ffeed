//! In-memory libp2p tests of the behaviour and codec: two swarms on `MemoryTransport`.

use super::*;
use futures::StreamExt;
use hearth_core::keys::Role;
use hearth_core::test_utils::TestRng;
use libp2p::Multiaddr;
use libp2p::swarm::SwarmEvent;
use request_response::{Event, Message};

/// A test message: any bytes, except that a frame starting with 0xff does not decode.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Msg(pub(super) Vec<u8>);

impl WireMessage for Msg {
    fn to_frame(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn from_frame(bytes: &[u8]) -> Result<Self, String> {
        if bytes.first() == Some(&0xff) {
            return Err("not a message".into());
        }
        Ok(Msg(bytes.to_vec()))
    }
}

fn identity(seed: u64) -> Identity {
    Identity::generate(Role::Professional, "t".into(), &mut TestRng::new(seed)).0
}

type TestSwarm = Swarm<Behaviour<Msg>>;

fn pair(server_cfg: &NetConfig, client_cfg: &NetConfig, port: u64) -> (TestSwarm, TestSwarm) {
    let a = memory_swarm(keypair(&identity(port)).unwrap(), server_cfg).unwrap();
    let b = memory_swarm(keypair(&identity(port + 1000)).unwrap(), client_cfg).unwrap();
    (a, b)
}

/// Drives both swarms until the client gets an answer to one request (or a failure).
/// The server answers every request by echoing it reversed. Also returns what the server's
/// application saw ("request delivered", or a failure of a delivered request). A stream that
/// fails before its request is read (oversized, garbage) is closed by the handler and never
/// reaches the application at all.
async fn exchange(
    server: &mut TestSwarm,
    client: &mut TestSwarm,
    addr: Multiaddr,
    request: Msg,
) -> (Result<Msg, String>, Vec<String>) {
    let server_id = *server.local_peer_id();
    client.add_peer_address(server_id, addr);
    client
        .behaviour_mut()
        .sync
        .send_request(&server_id, request);
    let mut server_failures = Vec::new();
    loop {
        tokio::select! {
            ev = server.select_next_some() => match ev {
                SwarmEvent::Behaviour(BehaviourEvent::Sync(Event::Message { message: Message::Request { request, channel, .. }, .. })) => {
                    server_failures.push("request delivered".to_string());
                    let mut r = request.0;
                    r.reverse();
                    let _ = server.behaviour_mut().sync.send_response(channel, Msg(r));
                }
                SwarmEvent::Behaviour(BehaviourEvent::Sync(Event::InboundFailure { error, .. })) => {
                    server_failures.push(error.to_string());
                }
                _ => {}
            },
            ev = client.select_next_some() => match ev {
                SwarmEvent::Behaviour(BehaviourEvent::Sync(Event::Message { message: Message::Response { response, .. }, .. })) => {
                    return (Ok(response), server_failures);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Sync(Event::OutboundFailure { error, .. })) => {
                    // Let the server report its side before returning.
                    let deadline = tokio::time::sleep(Duration::from_millis(200));
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            ev = server.select_next_some() => if let SwarmEvent::Behaviour(BehaviourEvent::Sync(Event::InboundFailure { error, .. })) = ev {
                                server_failures.push(error.to_string());
                            },
                            _ = &mut deadline => break,
                        }
                    }
                    return (Err(error.to_string()), server_failures);
                }
                _ => {}
            },
        }
    }
}

async fn listen(server: &mut TestSwarm, port: u64) -> Multiaddr {
    let addr: Multiaddr = format!("/memory/{port}").parse().unwrap();
    server.listen_on(addr.clone()).unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            return address;
        }
    }
}

#[test]
fn libp2p_peer_id_is_the_device_key() {
    let id = identity(1);
    let kp = keypair(&id).unwrap();
    let pid = kp.public().to_peer_id();
    assert_eq!(pid.to_string(), id.peer().to_string());
    assert_eq!(peer_key(&pid), Some(id.peer()));
    assert_eq!(peer_id(&id.peer()), Some(pid));
    // A non-ed25519 peer id is not a Hearth peer.
    let other = PeerId::random();
    assert_eq!(peer_key(&other), None);
    // Both ways agree with libp2p's own encoding of the key, for many keys.
    for seed in 2..40 {
        let id = identity(seed);
        let pid = keypair(&id).unwrap().public().to_peer_id();
        assert_eq!(peer_id(&id.peer()), Some(pid));
        assert_eq!(peer_key(&pid), Some(id.peer()));
    }
    // Bytes that are not a point on the curve have no peer id, as libp2p would refuse them.
    let bad = (0u8..=255)
        .map(|b| PeerKey([b; 32]))
        .find(|k| ed25519::PublicKey::try_from_bytes(&k.0).is_err())
        .expect("some repeated byte is not a point");
    assert_eq!(peer_id(&bad), None);
}

#[tokio::test]
async fn two_swarms_exchange_a_request_and_response() {
    let cfg = NetConfig::default();
    let (mut server, mut client) = pair(&cfg, &cfg, 41_001);
    let addr = listen(&mut server, 41_001).await;
    let (resp, failures) = exchange(&mut server, &mut client, addr, Msg(vec![1, 2, 3])).await;
    assert_eq!(resp.unwrap(), Msg(vec![3, 2, 1]));
    assert_eq!(failures, ["request delivered"]);
    // The connection is authenticated as the server's device key.
    assert!(client.is_connected(server.local_peer_id()));
}

#[tokio::test]
async fn an_oversized_frame_is_refused_and_the_connection_carries_on() {
    let small = NetConfig {
        max_frame: 1024,
        ..NetConfig::default()
    };
    let big = NetConfig {
        max_frame: 1 << 20,
        ..NetConfig::default()
    };
    let (mut server, mut client) = pair(&small, &big, 41_002);
    let addr = listen(&mut server, 41_002).await;
    let (resp, failures) =
        exchange(&mut server, &mut client, addr.clone(), Msg(vec![0; 4096])).await;
    assert!(resp.is_err(), "an oversized request got an answer");
    assert!(failures.is_empty(), "server application saw: {failures:?}");
    // A well-sized request still works afterwards.
    let (resp, _) = exchange(&mut server, &mut client, addr, Msg(vec![5; 10])).await;
    assert_eq!(resp.unwrap(), Msg(vec![5; 10]));
}

#[tokio::test]
async fn a_garbage_frame_closes_only_its_stream() {
    let cfg = NetConfig::default();
    let (mut server, mut client) = pair(&cfg, &cfg, 41_003);
    let addr = listen(&mut server, 41_003).await;
    let (resp, failures) = exchange(
        &mut server,
        &mut client,
        addr.clone(),
        Msg(vec![0xff, 1, 2]),
    )
    .await;
    assert!(resp.is_err());
    assert!(failures.is_empty(), "server application saw: {failures:?}");
    let (resp, _) = exchange(&mut server, &mut client, addr, Msg(vec![1, 2])).await;
    assert_eq!(resp.unwrap(), Msg(vec![2, 1]));
}

#[tokio::test]
async fn a_peer_that_never_answers_times_out() {
    let quick = NetConfig {
        request_timeout: Duration::from_millis(300),
        ..NetConfig::default()
    };
    // Only the client is quick: a server that times out its side first would close the stream
    // (an end of file for the client) before the client's own timeout fires.
    let (mut server, mut client) = pair(&NetConfig::default(), &quick, 41_004);
    let addr = listen(&mut server, 41_004).await;
    let server_id = *server.local_peer_id();
    client.add_peer_address(server_id, addr);
    client
        .behaviour_mut()
        .sync
        .send_request(&server_id, Msg(vec![1]));
    let mut held = Vec::new();
    let err = loop {
        tokio::select! {
            ev = server.select_next_some() => {
                if let SwarmEvent::Behaviour(BehaviourEvent::Sync(Event::Message { message: Message::Request { channel, .. }, .. })) = ev {
                    held.push(channel); // never answered
                }
            }
            ev = client.select_next_some() => {
                if let SwarmEvent::Behaviour(BehaviourEvent::Sync(Event::OutboundFailure { error, .. })) = ev {
                    break error;
                }
            }
        }
    };
    assert!(
        matches!(err, request_response::OutboundFailure::Timeout),
        "{err}"
    );
}
