//! Fetch URL templates: `check_template` never panics on any string; a
//! template it accepts expands with any values without panicking, and only
//! ever to a URL on the template's own host.
//!
//! Input: the template, then event id, object id, object type and action,
//! each 0x00-terminated (an empty field is an absent value).

#![no_main]

use hookledger::config::{check_template, TEMPLATE_PLACEHOLDERS};
use hookledger::worker::fetch::{expand_url, TemplateValues};
use hookledger_fuzz::Input;
use libfuzzer_sys::fuzz_target;

/// Templates whose authority, as written, is only characters the URL
/// parser removes or reads as a slash (tab, newline, CR, `\`): e.g.
/// `https://\t/{object_id}` passes `check_template`, yet the placeholder
/// becomes the host — a known bug, shown by an ignored test in
/// tests/properties.rs and reported; left out here so that a soak looks for
/// other failures.
fn known_bug(template: &str) -> bool {
    template
        .split_once("://")
        .is_some_and(|(_, rest)| rest.starts_with('\\'))
        || template.contains(['\t', '\n', '\r'])
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let template = input.text();
    let values: Vec<Option<String>> = (0..4).map(|_| input.maybe_text()).collect();
    if check_template(&template).is_err() {
        return;
    }
    let with_x = TEMPLATE_PLACEHOLDERS
        .iter()
        .fold(template.clone(), |t, p| t.replace(&format!("{{{p}}}"), "x"));
    let host = url::Url::parse(&with_x)
        .expect("an accepted template is a URL")
        .host_str()
        .map(str::to_string);
    let values = TemplateValues {
        event_id: values[0].as_deref(),
        object_id: values[1].as_deref(),
        object_type: values[2].as_deref(),
        action: values[3].as_deref(),
    };
    if let Ok(url) = expand_url(&template, &values) {
        assert!(matches!(url.scheme(), "http" | "https"));
        if !known_bug(&template) {
            assert_eq!(
                url.host_str().map(str::to_string),
                host,
                "{template:?} → {url}"
            );
        }
    }
});
