//! Delegation only attenuates, whatever a delegator signs.

use super::*;

type RawScopes = Vec<(usize, Option<usize>, u8)>;

fn arb_spec() -> impl Strategy<Value = (RawScopes, i64, u8)> {
    (
        proptest::collection::vec(
            (
                0..SectionClass::ALL.len(),
                proptest::option::of(0..Label::ALL.len()),
                0u8..3,
            ),
            1..6,
        ),
        1i64..400,
        0u8..3,
    )
}

fn to_scopes(v: &[(usize, Option<usize>, u8)]) -> Vec<Scope> {
    let mut s: Vec<Scope> = v
        .iter()
        .map(|(c, l, a)| Scope {
            class: SectionClass::ALL[*c],
            label: l.map(|l| Label::ALL[l]),
            ability: [Ability::Relay, Ability::Read, Ability::Append][*a as usize],
        })
        .collect();
    s.sort();
    s.dedup();
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]


    /// Whatever a delegator asks for, a chain that verifies never grants more than its root.
    #[test]
    fn delegation_never_widens_scope((ps, pdays, pdepth) in arb_spec(), (cs, cdays, cdepth) in arb_spec(), probe in (0..SectionClass::ALL.len(), 0..Label::ALL.len(), 0u8..3)) {
        let mut w = world(99);
        let mut parent_spec = spec(w.org.peer(), "notes", Ability::Read, pdays);
        parent_spec.scopes = to_scopes(&ps);
        parent_spec.depth = pdepth;
        let root = Grant::issue_root(&w.patient, parent_spec, &[], &mut w.rng).unwrap();
        let mut child_spec = spec(w.staff.peer(), "notes", Ability::Read, cdays);
        child_spec.scopes = to_scopes(&cs);
        child_spec.depth = cdepth;
        // Sign the child whatever it says (a malicious delegator skips local checks).
        let mut nonce = [0u8; 16];
        rand_core::Rng::fill_bytes(&mut w.rng, &mut nonce);
        let body = GrantBody {
            v: 1, issuer: w.org.peer(), audience: w.staff.peer(), record: root.body().record,
            scopes: child_spec.scopes, not_before: child_spec.not_before, expires: child_spec.expires,
            window: None, depth: child_spec.depth, purpose: Purpose::DirectCare, parent: Some(root.id()),
            nonce: ByteArray::new(nonce), keys: vec![], addresses: vec![],
        };
        let child = resign(body, w.org.device_key());
        let name = SectionName::new(SectionClass::ALL[probe.0], Label::ALL[probe.1]);
        let ability = [Ability::Relay, Ability::Read, Ability::Append][probe.2 as usize];
        let access = Access::section(w.staff.peer(), name, ability);
        if let Ok(r) = verify_chain(&[root.clone(), child], &access, TEST_NOW, &never) {
            prop_assert!(root.body().scopes.iter().any(|s| s.allows(&name, ability)));
            prop_assert!(r.expires <= root.body().expires);
            prop_assert!(r.depth < root.body().depth);
        }
    }
}
