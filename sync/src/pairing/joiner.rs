//! The new device's side of pairing.

use super::{
    JoinBody, LinkCode, MAX_WELCOME_WRAPS, PakeRng, WelcomeBody, aad, holds_auth, link, subkey,
};
use crate::protocol::{LinkMessage, Message};
use hearth_core::crypto;
use hearth_core::ids::RecordId;
use hearth_core::keys::Identity;
use hearth_core::record::{DeviceCert, KeyWrap};
use rand_core::CryptoRng;
use serde_bytes::ByteBuf;
use spake2::{Ed25519Group, Identity as PakeId, Password, Spake2};
use zeroize::Zeroizing;

/// What a successful join gives the new device.
#[derive(Debug)]
pub struct Welcome {
    /// The record it now belongs to.
    pub record: RecordId,
    /// Its certificate.
    pub cert: DeviceCert,
    /// The record's keys, wrapped to it.
    pub wraps: Vec<KeyWrap>,
}

/// Why joining failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The root holder refused (its reason, cut to 300 characters).
    #[error("the other device refused: {0}")]
    Refused(String),
    /// The root holder answered with something else than the next step.
    #[error("the other device answered out of turn")]
    OutOfTurn,
    /// This side was asked to take steps in the wrong order.
    #[error("link steps out of order")]
    OutOfOrder,
    /// The root holder's PAKE message is malformed (a damaged message, or an attack).
    #[error("the other device's key exchange message is malformed")]
    MalformedPake,
    /// The join request could not be encoded (a bug).
    #[error("internal: cannot encode the request")]
    Encode,
    /// The welcome does not open with the agreed key: the codes differed, or an attack.
    #[error("the other device's answer does not open with the agreed key")]
    WelcomeSealed,
    /// The welcome opened but is malformed.
    #[error("the other device's answer is malformed")]
    WelcomeMalformed,
    /// The welcome opened but its certificate or keys are not for this device or not signed
    /// by the record.
    #[error("refusing the link: {0}")]
    BadWelcome(&'static str),
}

impl JoinError {
    /// Whether the other device's answer failed an integrity check (as opposed to a refusal
    /// or a step out of turn).
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            JoinError::WelcomeSealed | JoinError::WelcomeMalformed | JoinError::BadWelcome(_)
        )
    }
}

/// The joiner's side, one step at a time (the caller moves the messages).
pub struct Joiner<'a> {
    code: &'a LinkCode,
    identity: &'a Identity,
    key: Option<Zeroizing<Vec<u8>>>,
    pake: Option<Spake2<Ed25519Group>>,
}

fn unexpected(m: LinkMessage) -> JoinError {
    match m {
        LinkMessage::Refused { reason } => {
            JoinError::Refused(reason.chars().take(300).collect::<String>())
        }
        _ => JoinError::OutOfTurn,
    }
}

impl<'a> Joiner<'a> {
    /// Starts joining with `code` as `identity` (fresh keys, not yet saved anywhere).
    pub fn new(code: &'a LinkCode, identity: &'a Identity) -> Self {
        Joiner {
            code,
            identity,
            key: None,
            pake: None,
        }
    }

    /// The first message.
    pub fn start(&mut self, rng: &mut impl CryptoRng) -> Message {
        let (state, msg_a) = Spake2::<Ed25519Group>::start_a_with_rng(
            &Password::new(self.code.secret.as_slice()),
            &PakeId::new(&self.identity.peer().0),
            &PakeId::new(&self.code.peer.0),
            PakeRng(rng),
        );
        self.pake = Some(state);
        Message::Link(LinkMessage::Start {
            slot: ByteBuf::from(self.code.slot.clone()),
            pake: ByteBuf::from(msg_a),
        })
    }

    /// Handles the root holder's PAKE message: the sealed join request to send next.
    pub fn on_pake(
        &mut self,
        msg: Message,
        rng: &mut impl CryptoRng,
    ) -> Result<Message, JoinError> {
        let pake = match link(msg)? {
            LinkMessage::Pake { pake } => pake,
            other => return Err(unexpected(other)),
        };
        let state = self.pake.take().ok_or(JoinError::OutOfOrder)?;
        let k = Zeroizing::new(state.finish(&pake).map_err(|_| JoinError::MalformedPake)?);
        let body = JoinBody {
            name: self.identity.name.clone(),
            agreement: ByteBuf::from(self.identity.agreement_public().to_vec()),
            agreement_signature: ByteBuf::from(self.identity.agreement_certificate().to_vec()),
        };
        let bytes =
            Zeroizing::new(serde_ipld_dagcbor::to_vec(&body).map_err(|_| JoinError::Encode)?);
        let sealed = crypto::seal(
            &subkey(&k, "join"),
            &aad(
                "join",
                &self.code.slot,
                &self.identity.peer(),
                &self.code.peer,
            ),
            &bytes,
            rng,
        );
        self.key = Some(k);
        Ok(Message::Link(LinkMessage::Join {
            sealed: ByteBuf::from(sealed),
        }))
    }

    /// Handles the welcome: checks everything in it against the record root and this
    /// device's keys.
    pub fn on_welcome(&mut self, msg: Message) -> Result<Welcome, JoinError> {
        let sealed = match link(msg)? {
            LinkMessage::Welcome { sealed } => sealed,
            other => return Err(unexpected(other)),
        };
        let k = self.key.take().ok_or(JoinError::OutOfOrder)?;
        let me = self.identity.peer();
        let plain = Zeroizing::new(
            crypto::open(
                &subkey(&k, "welcome"),
                &aad("welcome", &self.code.slot, &me, &self.code.peer),
                &sealed,
            )
            .map_err(|_| JoinError::WelcomeSealed)?,
        );
        let w: WelcomeBody =
            serde_ipld_dagcbor::from_slice(&plain).map_err(|_| JoinError::WelcomeMalformed)?;
        let mine = self.identity.agreement_public();
        if w.cert.peer != me
            || w.cert.agreement_public != data_encoding::HEXLOWER.encode(&mine)
            || !w.cert.verify(&w.record)
        {
            return Err(JoinError::BadWelcome(
                "the device certificate is not for this device or not signed by the record",
            ));
        }
        if w.wraps.len() > MAX_WELCOME_WRAPS
            || w.wraps
                .iter()
                .any(|x| x.record != w.record || x.recipient.into_array() != mine || !x.verify())
        {
            return Err(JoinError::BadWelcome(
                "a key is not for this device or not signed by the record",
            ));
        }
        if !holds_auth(&w.wraps) {
            return Err(JoinError::BadWelcome("the record's keys are missing"));
        }
        Ok(Welcome {
            record: w.record,
            cert: w.cert,
            wraps: w.wraps,
        })
    }
}
