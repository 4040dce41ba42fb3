//! Signature headers of every scheme: arbitrary values never verify and
//! never panic; what `sign` produces verifies; a changed body does not.
//!
//! Input: 8 bytes of "now", three 0x00-terminated header values (given to
//! each scheme's signature headers in order), then the body.

#![no_main]

use hookledger::sources::SignatureError;
use hookledger_fuzz::{sources, Input, SIGNED};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let now = input.i64();
    let mutation = input.u64();
    let values: Vec<String> = (0..3).map(|_| input.text()).collect();
    let body = input.rest();
    for (name, headers) in SIGNED {
        let source = &sources()[name];
        let given: Vec<(String, String)> = headers
            .iter()
            .zip(&values)
            .map(|(h, v)| (h.to_string(), v.clone()))
            .collect();
        assert!(
            source.verify(&given, body, now).is_err(),
            "{name} accepted {given:?}"
        );

        // The sender's side: a non-blank, trimmed message id (HTTP trims
        // header values, and `verify` reads them trimmed).
        let id = Some(values[0].trim())
            .filter(|id| !id.is_empty())
            .unwrap_or("msg_fuzz");
        let with_id = vec![("webhook-id".to_string(), id.to_string())];
        let signed = source.sign(&with_id, body, now);
        assert_eq!(
            source.verify(&signed, body, now),
            Ok(()),
            "{name}: {signed:?}"
        );
        if !body.is_empty() {
            let mut changed = body.to_vec();
            let at = (mutation as usize) % changed.len();
            changed[at] ^= ((mutation >> 56) as u8).max(1);
            assert_eq!(
                source.verify(&signed, &changed, now),
                Err(SignatureError::Invalid),
                "{name}: byte {at} changed"
            );
        }
        // A signed header with one byte replaced: any answer, no panic.
        for (i, (header, value)) in signed.iter().enumerate() {
            if value.is_empty() {
                continue;
            }
            let mut bytes = value.clone().into_bytes();
            let at = (mutation as usize >> 8) % bytes.len();
            bytes[at] = (mutation >> 48) as u8;
            let mut mutated = signed.clone();
            mutated[i] = (header.clone(), String::from_utf8_lossy(&bytes).into_owned());
            let _ = source.verify(&mutated, body, now);
        }
    }
});
