//! A patient, a GP and a social worker, in one process: each node has its own sled store and
//! keys; sync messages pass between them through the real wire encoding (the network is
//! replaced by hand-delivery). Shows grants, sync of granted sections only, a GP's entry
//! flowing back to the patient and on to the social worker, and a section nobody was granted
//! staying with the patient.
//!
//! Run: `cargo run --release --locked -p hearth-examples --bin care_team`
//! (`scripts/demo.sh` runs the same story with real `hearth` processes over libp2p.)

use anyhow::{Context, Result, bail};
use hearth_core::grant::{self, Ability, Grant, GrantSpec, Purpose};
use hearth_core::ids::RecordId;
use hearth_core::keys::{Identity, Role};
use hearth_core::record::{NewRecord, Vault};
use hearth_core::section::SectionName;
use hearth_core::time::Timestamp;
use hearth_node::sled_store::SledStore;
use hearth_sync::protocol::{self, Message};
use hearth_sync::session::Local;
use serde_json::json;

type Rng = rand_core::UnwrapErr<getrandom::SysRng>;

struct Node {
    name: &'static str,
    id: Identity,
    vault: Vault<SledStore>,
    _dir: tempfile::TempDir,
}

impl Node {
    fn new(role: Role, name: &'static str, rng: &mut Rng) -> Result<Node> {
        let dir = tempfile::tempdir()?;
        let (id, _) = Identity::generate(role, name.into(), rng);
        let vault = Vault::open(SledStore::open(dir.path())?)?;
        Ok(Node {
            name,
            id,
            vault,
            _dir: dir,
        })
    }

    fn notes(&self, rid: &RecordId, section: &str) -> Vec<String> {
        let Ok(mut rec) = self.vault.open_record(&self.id, rid) else {
            return Vec::new();
        };
        let Ok(name) = section.parse::<SectionName>() else {
            return Vec::new();
        };
        rec.show(&name)
            .map(|v| {
                v.entries
                    .iter()
                    .map(|e| e.body["text"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn now() -> Timestamp {
    Timestamp::from_millis(jiff::Timestamp::now().as_millisecond())
}

/// One sync from `a` to `b`, every message through the wire encoding.
fn sync(a: &Node, b: &Node, rid: RecordId, rng: &mut Rng) -> Result<(usize, usize)> {
    let (pa, pb) = (Local::new(&a.vault, &a.id), Local::new(&b.vault, &b.id));
    let mut req = pa.start_as(rid, b.id.peer(), true, now())?;
    let (mut received, mut sent) = (0, 0);
    for _ in 0..8 {
        let wire = protocol::encode(&Message::Request(req));
        let Message::Request(r) = protocol::decode(&wire)? else {
            bail!("not a request")
        };
        let (resp, rb) = pb.on_request(a.id.peer(), r, now(), rng)?;
        received += rb.received;
        let wire = protocol::encode(&Message::Response(resp));
        let Message::Response(r) = protocol::decode(&wire)? else {
            bail!("not a response")
        };
        let (next, ra) = pa.on_response(b.id.peer(), r, now(), rng)?;
        received += ra.received;
        sent += ra.sent;
        match next {
            Some(n) => req = n,
            None => return Ok((received, sent)),
        }
    }
    bail!("sync did not settle")
}

fn grant(
    patient: &Node,
    to: &Node,
    spec: &str,
    ability: Ability,
    purpose: Purpose,
    rng: &mut Rng,
) -> Result<Grant> {
    let rid = patient.id.record_id().context("patient")?;
    let t = now();
    let mut s = GrantSpec::new(
        to.id.peer(),
        spec.parse()?,
        ability,
        t,
        t.saturating_add_millis(30 * 86_400_000),
    );
    s.purpose = purpose;
    let g = Grant::issue_root(&patient.id, s, &[], rng)?;
    let mut rec = patient.vault.open_record(&patient.id, &rid)?;
    rec.put_auth_items(
        vec![(
            format!("grant/{}", g.id()),
            json!({"token": grant::chain_to_token(std::slice::from_ref(&g))}).to_string(),
        )],
        t,
        rng,
    )?;
    to.vault.put_local(
        &format!("grant/{rid}/{}", g.id()),
        &grant::chain_to_bytes(std::slice::from_ref(&g)),
    )?;
    Ok(g)
}

fn main() -> Result<()> {
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    println!("A care team in one process: three nodes, three stores, one wire format.\n");
    let edith = Node::new(Role::Patient, "Edith", &mut rng)?;
    let gp = Node::new(Role::Professional, "Dr Shah (GP)", &mut rng)?;
    let sw = Node::new(Role::Professional, "Sam (social worker)", &mut rng)?;
    let rid = edith.vault.create_record(
        &edith.id,
        NewRecord {
            demographics: Some(json!({"name": "Edith Jones"})),
        },
        now(),
        &mut rng,
    )?;
    {
        let mut rec = edith.vault.open_record(&edith.id, &rid)?;
        rec.add_entry(
            &"notes".parse()?,
            &json!({"text": "Falls at home twice this month"}),
            now(),
            &mut rng,
        )?;
        rec.add_entry(
            &"notes:mental-health".parse()?,
            &json!({"text": "Low mood since husband died"}),
            now(),
            &mut rng,
        )?;
        rec.add_entry(&"social-care/assessments".parse()?, &json!({"assessment_type": "Care Act needs assessment", "date": "2026-11-01", "summary": "Needs help with washing and dressing"}), now(), &mut rng)?;
    }
    println!("1. {} holds her record {rid}", edith.name);
    println!("   with notes, notes:mental-health and social-care/assessments.\n");

    grant(
        &edith,
        &gp,
        "notes",
        Ability::Append,
        Purpose::DirectCare,
        &mut rng,
    )?;
    grant(
        &edith,
        &sw,
        "notes,social-care/assessments",
        Ability::Read,
        Purpose::SocialCare,
        &mut rng,
    )?;
    println!(
        "2. She grants {}: notes (append), and {}: notes + social-care/assessments (read).",
        gp.name, sw.name
    );
    println!("   Neither is granted notes:mental-health.\n");

    let (r, _) = sync(&gp, &edith, rid, &mut rng)?;
    println!(
        "3. {} syncs with Edith's node: {r} bundles received.",
        gp.name
    );
    println!("   notes: {:?}", gp.notes(&rid, "notes"));
    println!(
        "   notes:mental-health: {:?} (never sent, not even encrypted)\n",
        gp.notes(&rid, "notes:mental-health")
    );

    {
        let mut rec = gp.vault.open_record(&gp.id, &rid)?;
        rec.add_entry(
            &"notes".parse()?,
            &json!({"text": "Home visit: refer to falls clinic"}),
            now(),
            &mut rng,
        )?;
    }
    let (r, s) = sync(&gp, &edith, rid, &mut rng)?;
    println!(
        "4. {} adds a note and syncs again: {s} bundle pushed, {r} stored by Edith's node after checking the GP's append grant.",
        gp.name
    );
    println!("   Edith's notes: {:?}\n", edith.notes(&rid, "notes"));

    let (r, _) = sync(&sw, &edith, rid, &mut rng)?;
    println!(
        "5. {} syncs: {r} bundles; the GP's note arrives, checked against the GP's grant in Edith's auth document.",
        sw.name
    );
    println!("   notes: {:?}", sw.notes(&rid, "notes"));
    println!(
        "   social-care/assessments: {} entry",
        sw.notes(&rid, "social-care/assessments").len()
    );
    println!(
        "   notes:mental-health: {:?}\n",
        sw.notes(&rid, "notes:mental-health")
    );

    let stranger = Node::new(Role::Professional, "Someone else", &mut rng)?;
    let refusal = sync(&stranger, &edith, rid, &mut rng)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    println!("6. A node with no grant asks: {refusal}");
    Ok(())
}
