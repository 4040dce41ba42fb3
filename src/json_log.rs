//! `server.log_format = "json"` (SPEC §9): each log line one JSON object
//! with top-level `timestamp` (RFC 3339 UTC, ms), `level`, `target`,
//! `message`, the event's own fields, and the fields of every span it is in
//! (`source`, `id`, `destination`, …), outer spans first so an inner span's
//! field of the same name wins, the event's own over both. The four fixed
//! keys are written last, so no field can shadow them.
//!
//! Why not tracing-subscriber's `json` feature: it nests span fields under
//! `span`/`spans` rather than at the top level, and it pulls in
//! `tracing-serde`. Here span fields are recorded as JSON text by
//! [`JsonFields`] (the fmt layer keeps that text in each span's extensions)
//! and merged into the line by [`JsonLines`]. Values are whatever the code
//! logs: nothing secret is ever given to `tracing` (`config::Secret` prints
//! as `[redacted]`).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Records fields into a JSON object; numbers and booleans stay typed,
/// anything else is its `Display`/`Debug` text.
struct Visitor<'a>(&'a mut Map<String, Value>);

impl Visit for Visitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let number = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.0.insert(field.name().to_string(), number);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_string(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message` arrives as `format_args!`, whose Debug is its text.
        self.0
            .insert(field.name().to_string(), Value::from(format!("{value:?}")));
    }
}

/// Span fields as a JSON object's text (what the fmt layer stores per span).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut map = Map::new();
        fields.record(&mut Visitor(&mut map));
        write!(writer, "{}", Value::Object(map))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // A span's `record(…)` later on: merge into what it holds.
        let mut map = match serde_json::from_str(&current.fields) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        fields.record(&mut Visitor(&mut map));
        current.fields = Value::Object(map).to_string();
        Ok(())
    }
}

/// One JSON object per event, on one line.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(map)) = serde_json::from_str(&fields.fields) {
                    line.extend(map);
                }
            }
        }
        event.record(&mut Visitor(&mut line));
        let meta = event.metadata();
        let message = line.remove("message").unwrap_or_else(|| Value::from(""));
        line.insert("message".into(), message);
        line.insert("timestamp".into(), Value::from(now_rfc3339()));
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("target".into(), Value::from(meta.target()));
        writeln!(writer, "{}", Value::Object(line))
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A line that is not a log event (a CLI command's result, a start-up
/// failure) in the same shape: `level` info or error, `target` hookledger.
pub fn line(level: tracing::Level, message: &str) -> String {
    let mut line = Map::new();
    line.insert("message".into(), Value::from(message));
    line.insert("timestamp".into(), Value::from(now_rfc3339()));
    line.insert("level".into(), Value::from(level.as_str()));
    line.insert("target".into(), Value::from("hookledger"));
    Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects what the layer writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    fn lines_of(run: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .with_writer(buffer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, run);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn each_event_is_one_object_with_span_fields_at_the_top_level() {
        let lines = lines_of(|| {
            let outer = tracing::info_span!("ingest", source = "stripe", id = 7_i64);
            let _outer = outer.enter();
            let inner = tracing::info_span!("deliver", destination = "crm", id = 8_i64);
            let _inner = inner.enter();
            tracing::warn!(attempt = 2_u64, ok = false, "upstream said \"no\"\nbye");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["message"], "upstream said \"no\"\nbye");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["source"], "stripe");
        assert_eq!(line["destination"], "crm");
        assert_eq!(line["id"], 8, "the inner span wins");
        assert_eq!(
            (line["attempt"].clone(), line["ok"].clone()),
            (json(2), json(false))
        );
        let at = line["timestamp"].as_str().unwrap();
        assert!(crate::clock::parse_rfc3339(at).is_some(), "{at}");
    }

    #[test]
    fn fields_recorded_later_and_events_without_a_message_still_make_objects() {
        let lines = lines_of(|| {
            let span = tracing::info_span!("work", id = tracing::field::Empty);
            span.record("id", 42_i64);
            let _entered = span.enter();
            tracing::info!(level = "shadow", target = "shadow", count = 3_i64);
        });
        let line = &lines[0];
        assert_eq!(line["id"], 42);
        assert_eq!(line["message"], "");
        assert_eq!(line["level"], "INFO", "fixed keys are not shadowed");
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["count"], 3);
    }

    #[test]
    fn a_plain_line_has_the_same_shape() {
        let line: Value = serde_json::from_str(&line(tracing::Level::ERROR, "boom")).unwrap();
        assert_eq!(line["message"], "boom");
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["target"], "hookledger");
        assert!(line["timestamp"].is_string());
    }

    fn json<T: Into<Value>>(v: T) -> Value {
        v.into()
    }
}
