//! Linking a patient's devices, sans-I/O: the one-time link code, the root holder's pairing
//! slot ([`Pairing`]) and the new device's side ([`Joiner`]), with the time and randomness
//! passed in.
//!
//! The root holder opens a **pairing slot** and shows a one-time code: `HEARTH1L…`, holding the
//! root device's peer id and addresses, a slot id and a 128-bit secret. The new device dials
//! that peer id (Noise proves it is the right device) and the two run SPAKE2 with the secret as
//! the password and both peer ids as identities, so an eavesdropper learns nothing and a man in
//! the middle cannot relay. Then, on `/hearth/sync/1` ([`LinkMessage`]):
//!
//! ```text
//! joiner                                         root holder
//!   Link::Start { slot, pake A }            →
//!                                           ←    Link::Pake { pake B }
//!   Link::Join { seal(K, name, agreement key,
//!                     its signature) }      →    checks; the node certifies the device in
//!                                                the auth document and wraps every key to it
//!                                           ←    Link::Welcome { seal(K, record, certificate,
//!                                                                 key wraps) }
//! ```
//!
//! A slot serves one device: it closes after a success, after the first failed attempt (a
//! wrong code gets one online guess, never an offline one), or when it expires, by the time
//! passed in. The slot never touches the store: when a join opens, [`Pairing::handle`] returns
//! [`Step::Certify`] and the node certifies the device in its record and feeds the result back
//! with [`Pairing::certified`], which seals the welcome.

use crate::protocol::{LinkMessage, MAX_KEYS, Message};
use hearth_core::crypto::{self, SymmetricKey};
use hearth_core::ids::{PeerKey, RecordId, SectionId};
use hearth_core::record::{DeviceCert, KeyWrap};
use hearth_core::time::Timestamp;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use spake2::{Ed25519Group, Identity as PakeId, Password, Spake2};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

mod code;
mod joiner;

pub use code::{CODE_PREFIX, CodeError, LinkCode};
pub use joiner::{JoinError, Joiner, Welcome};

/// How long a code stays valid unless told otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// How a pairing slot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkOutcome {
    /// A device was linked.
    Linked {
        /// Its device key.
        peer: PeerKey,
        /// The name it gave.
        name: String,
    },
    /// The attempt failed (why, in words); the slot is closed.
    Failed(String),
    /// Nobody came before the code expired.
    Expired,
}

/// Why a slot could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// No address to put in the code.
    #[error("this node has no listen address to put in the code")]
    NoAddress,
    /// The code could not be encoded (a bug).
    #[error("internal: cannot encode the code")]
    Encode,
}

enum SlotState {
    Open,
    Pake {
        peer: PeerKey,
        key: Zeroizing<Vec<u8>>,
    },
    /// The join opened: waiting for the node to certify the device.
    Certifying {
        peer: PeerKey,
        key: Zeroizing<Vec<u8>>,
    },
    Done(LinkOutcome),
}

struct Slot {
    id: [u8; 8],
    secret: Zeroizing<[u8; 16]>,
    expires: Instant,
    state: SlotState,
}

/// What to do with a link message.
#[derive(Debug)]
pub enum Step {
    /// Send this answer.
    Answer(LinkMessage),
    /// Certify the device in this node's record (its signed agreement key is checked there),
    /// then call [`Pairing::certified`] for the answer.
    Certify(CertifyRequest),
}

/// A joining device to certify, from its opened join request.
#[derive(Debug)]
pub struct CertifyRequest {
    /// Its device key (the connection's).
    pub peer: PeerKey,
    /// The name it gave.
    pub name: String,
    /// Its X25519 agreement key.
    pub agreement: [u8; 32],
    /// Its device key's signature over the agreement key.
    pub signature: [u8; 64],
}

/// What certifying the device gave: the record, its certificate and every key wrapped to it.
#[derive(Debug)]
pub struct Certified {
    /// The record.
    pub record: RecordId,
    /// The device's certificate.
    pub cert: DeviceCert,
    /// The record's keys, wrapped to the device.
    pub wraps: Vec<KeyWrap>,
}

/// The root holder's pairing slot (one at a time: a new code replaces an open one).
#[derive(Default)]
pub struct Pairing {
    slot: Option<Slot>,
}

impl std::fmt::Debug for Pairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pairing(..)")
    }
}

/// What the joining device sends, sealed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    name: String,
    agreement: ByteBuf,
    agreement_signature: ByteBuf,
}

/// What the root holder answers, sealed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WelcomeBody {
    record: RecordId,
    cert: DeviceCert,
    wraps: Vec<KeyWrap>,
}

fn subkey(k: &[u8], label: &str) -> SymmetricKey {
    SymmetricKey::from_bytes(crypto::sha256(&[b"hearth/link/v1/", label.as_bytes(), k]))
}

fn aad(label: &str, slot: &[u8], joiner: &PeerKey, root: &PeerKey) -> Vec<u8> {
    let mut a = format!("hearth/link/v1/{label}").into_bytes();
    a.extend_from_slice(slot);
    a.extend_from_slice(&joiner.0);
    a.extend_from_slice(&root.0);
    a
}

fn refused(reason: &str) -> LinkMessage {
    LinkMessage::Refused {
        reason: reason.to_string(),
    }
}

/// The refusal of a code this node has no open slot for.
pub const NO_SLOT: &str =
    "no such link code here, or it expired or was already used; run `hearth device link` again";
const MISMATCH: &str = "the link code did not match; run `hearth device link` again for a new code";

/// `rand_core` 0.6's traits over this crate's generator, for `spake2`.
struct PakeRng<'a, R>(&'a mut R);

impl<R: CryptoRng> spake2_rand::RngCore for PakeRng<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), spake2_rand::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl<R: CryptoRng> spake2_rand::CryptoRng for PakeRng<'_, R> {}

impl Pairing {
    /// Opens a slot until `now + ttl` and returns its code, for the root device `peer`
    /// reachable at `addrs`; `wall` is the same moment by the wall clock (the code carries its
    /// expiry for the joiner to show).
    pub fn open(
        &mut self,
        peer: PeerKey,
        addrs: &[String],
        ttl: Duration,
        wall: Timestamp,
        now: Instant,
        rng: &mut impl CryptoRng,
    ) -> Result<String, OpenError> {
        if addrs.is_empty() {
            return Err(OpenError::NoAddress);
        }
        let mut id = [0u8; 8];
        rng.fill_bytes(&mut id);
        let mut secret = Zeroizing::new([0u8; 16]);
        rng.fill_bytes(secret.as_mut_slice());
        let expires = wall.saturating_add_millis(ttl.as_millis().try_into().unwrap_or(i64::MAX));
        let text = code::encode(peer, addrs, &id, secret.as_slice(), expires)?;
        self.slot = Some(Slot {
            id,
            secret,
            expires: now.checked_add(ttl).unwrap_or(now),
            state: SlotState::Open,
        });
        Ok(text)
    }

    /// How the slot ended, if it has (an open slot past its time counts as expired).
    pub fn outcome(&mut self, now: Instant) -> Option<LinkOutcome> {
        let slot = self.slot.as_mut()?;
        if let SlotState::Done(o) = &slot.state {
            return Some(o.clone());
        }
        if now >= slot.expires {
            slot.state = SlotState::Done(LinkOutcome::Expired);
            return Some(LinkOutcome::Expired);
        }
        None
    }

    /// Closes any open slot.
    pub fn close(&mut self) {
        if let Some(slot) = self.slot.as_mut()
            && !matches!(slot.state, SlotState::Done(_))
        {
            slot.state = SlotState::Done(LinkOutcome::Failed("cancelled".into()));
        }
    }

    /// The root holder `me` takes one link message from `peer` (authenticated by the
    /// transport) at `now`.
    pub fn handle(
        &mut self,
        me: PeerKey,
        peer: PeerKey,
        msg: LinkMessage,
        now: Instant,
        rng: &mut impl CryptoRng,
    ) -> Step {
        let Some(slot) = self.slot.as_mut() else {
            return Step::Answer(refused(NO_SLOT));
        };
        if matches!(slot.state, SlotState::Done(_)) {
            return Step::Answer(refused(NO_SLOT));
        }
        if now >= slot.expires {
            slot.state = SlotState::Done(LinkOutcome::Expired);
            return Step::Answer(refused(NO_SLOT));
        }
        // Whatever happens below sets the next state; a step that fails leaves the slot closed.
        let state = std::mem::replace(
            &mut slot.state,
            SlotState::Done(LinkOutcome::Failed("interrupted".into())),
        );
        let answer = match (msg, state) {
            (LinkMessage::Start { slot: id, pake }, SlotState::Open) => {
                if id.as_slice() != slot.id {
                    // Another slot's code (or a guess): not an attempt at this one.
                    slot.state = SlotState::Open;
                    return Step::Answer(refused(NO_SLOT));
                }
                let (state, msg_b) = Spake2::<Ed25519Group>::start_b_with_rng(
                    &Password::new(slot.secret.as_slice()),
                    &PakeId::new(&peer.0),
                    &PakeId::new(&me.0),
                    PakeRng(rng),
                );
                match state.finish(&pake) {
                    Ok(k) => {
                        slot.state = SlotState::Pake {
                            peer,
                            key: Zeroizing::new(k),
                        };
                        LinkMessage::Pake {
                            pake: ByteBuf::from(msg_b),
                        }
                    }
                    Err(_) => fail(slot, "the new device's key exchange message is malformed"),
                }
            }
            (LinkMessage::Join { sealed }, SlotState::Pake { peer: p, key }) if p == peer => {
                let join_key = subkey(&key, "join");
                let Ok(plain) =
                    crypto::open(&join_key, &aad("join", &slot.id, &peer, &me), &sealed)
                else {
                    return Step::Answer(fail(slot, MISMATCH));
                };
                let plain = Zeroizing::new(plain);
                let Ok(body) = serde_ipld_dagcbor::from_slice::<JoinBody>(&plain) else {
                    return Step::Answer(fail(slot, "the new device sent a malformed request"));
                };
                let (Ok(agreement), Ok(signature)) = (
                    <[u8; 32]>::try_from(body.agreement.as_slice()),
                    <[u8; 64]>::try_from(body.agreement_signature.as_slice()),
                ) else {
                    return Step::Answer(fail(slot, "the new device sent a malformed request"));
                };
                slot.state = SlotState::Certifying { peer, key };
                return Step::Certify(CertifyRequest {
                    peer,
                    name: body.name,
                    agreement,
                    signature,
                });
            }
            (LinkMessage::Start { .. }, _) | (LinkMessage::Join { .. }, _) => {
                // A second device, or steps out of order: the slot serves one attempt.
                fail(
                    slot,
                    "a second or out-of-order attempt to use the link code",
                )
            }
            (_, state) => {
                slot.state = state;
                refused("not a request")
            }
        };
        Step::Answer(answer)
    }

    /// The node certified the device of [`Step::Certify`] (or could not: the joiner is told
    /// why): the sealed welcome, or the refusal.
    pub fn certified(
        &mut self,
        me: PeerKey,
        peer: PeerKey,
        result: Result<Certified, CertifyError>,
        rng: &mut impl CryptoRng,
    ) -> LinkMessage {
        let Some(slot) = self.slot.as_mut() else {
            return refused(NO_SLOT);
        };
        let state = std::mem::replace(
            &mut slot.state,
            SlotState::Done(LinkOutcome::Failed("interrupted".into())),
        );
        let key = match state {
            SlotState::Certifying { peer: p, key } if p == peer => key,
            state => {
                slot.state = state;
                return refused(NO_SLOT);
            }
        };
        let c = match result {
            Ok(c) => c,
            Err(why) => return fail(slot, &why.to_string()),
        };
        let name = c.cert.name.clone();
        let welcome = WelcomeBody {
            record: c.record,
            cert: c.cert,
            wraps: c.wraps,
        };
        let Ok(bytes) = serde_ipld_dagcbor::to_vec(&welcome) else {
            return fail(slot, "internal: cannot encode the answer");
        };
        let bytes = Zeroizing::new(bytes);
        let sealed = crypto::seal(
            &subkey(&key, "welcome"),
            &aad("welcome", &slot.id, &peer, &me),
            &bytes,
            rng,
        );
        slot.state = SlotState::Done(LinkOutcome::Linked { peer, name });
        LinkMessage::Welcome {
            sealed: ByteBuf::from(sealed),
        }
    }
}

fn fail(slot: &mut Slot, why: &str) -> LinkMessage {
    slot.state = SlotState::Done(LinkOutcome::Failed(why.to_string()));
    refused(why)
}

/// The link message inside `m`, if it is one.
fn link(m: Message) -> Result<LinkMessage, JoinError> {
    match m {
        Message::Link(l) => Ok(l),
        _ => Err(JoinError::OutOfTurn),
    }
}

/// The most key wraps a welcome may carry.
const MAX_WELCOME_WRAPS: usize = MAX_KEYS;

/// The auth document's key must be among them.
fn holds_auth(wraps: &[KeyWrap]) -> bool {
    wraps.iter().any(|x| x.section == SectionId::AUTH)
}

/// Why the root holder could not certify a joining device (told to the joiner).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertifyError {
    /// This node holds no record of its own (it is not a patient's device).
    #[error("this node holds no patient record")]
    NoRecord,
    /// The record refused (the device's signature over its agreement key, or the store).
    #[error("cannot link that device: {0}")]
    Record(#[from] hearth_core::record::RecordError),
}

/// The root holder's store work for [`Step::Certify`]: certifies the device in the record this
/// node holds the root of and wraps every key to it (the device's signature over its agreement
/// key is checked there).
pub fn certify<S: hearth_core::store::Store>(
    vault: &hearth_core::record::Vault<S>,
    identity: &hearth_core::keys::Identity,
    req: &CertifyRequest,
    now: Timestamp,
    rng: &mut impl CryptoRng,
) -> Result<Certified, CertifyError> {
    let record = identity.record_id().ok_or(CertifyError::NoRecord)?;
    let mut rec = vault.open_record(identity, &record)?;
    let (cert, wraps) =
        rec.certify_device(req.peer, &req.name, req.agreement, &req.signature, now, rng)?;
    Ok(Certified {
        record,
        cert,
        wraps,
    })
}
