//! A client frame (or a record's fields, or an emitted command) already serialized to JSON,
//! and [`Sequenced`], a frame with its per-key `seq`. Domains build each once from typed
//! values; the handler runtime stores it in a key's outbox and publishes it without serializing
//! it again, with `seq` added as [`Sequenced`] writes it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// An event frame with its per-key sequence number: `{"seq": N, …the frame's own fields}`, `seq`
/// first, as every fanned-out event of every domain reaches clients. The handler runtime adds
/// `seq` to a frame already serialized with [`Frame::with_seq`], which writes exactly these
/// bytes; a client or test reads such a frame as `Sequenced<T>`. (The snapshot frames edges
/// build, `sync` and `initial_state`, carry `seq` last, as they always have.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sequenced<T> {
    /// The per-key event sequence number.
    pub seq: u64,
    /// The frame.
    #[serde(flatten)]
    pub frame: T,
}

/// One JSON frame, kept as its text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Frame(Box<RawValue>);

impl Frame {
    /// Serializes `value`. Frames are built from plain structs and maps with string keys, which
    /// always serialize; anything else becomes `null` rather than a panic.
    pub fn new(value: impl Serialize) -> Self {
        match serde_json::value::to_raw_value(&value) {
            Ok(raw) => Frame(raw),
            Err(_) => Frame::null(),
        }
    }

    fn null() -> Self {
        Frame(RawValue::from_string("null".to_string()).unwrap_or_else(|_| unreachable!()))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The JSON, as serde_json's raw value (to embed it in another message as it is).
    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// The frame as a value (for tests and for code that inspects frames off the hot path).
    pub fn value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or(Value::Null)
    }

    /// The same object with `"seq": seq` as its first field (replacing none: domains do not set
    /// `seq`): the bytes of [`Sequenced`] around the frame, without serializing it again. Frames
    /// that are not objects are returned unchanged.
    pub fn with_seq(self, seq: u64) -> Self {
        let text = self.get();
        let Some(rest) = text.strip_prefix('{') else {
            return self;
        };
        let rest = rest.trim_start();
        let joined = if rest.starts_with('}') {
            format!("{{\"seq\":{seq}{rest}")
        } else {
            format!("{{\"seq\":{seq},{rest}")
        };
        match RawValue::from_string(joined) {
            Ok(raw) => Frame(raw),
            Err(_) => self,
        }
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl From<&Value> for Frame {
    fn from(value: &Value) -> Self {
        Frame::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seq_becomes_the_first_field_of_an_object() {
        let frame = Frame::new(json!({"type": "x", "n": 1})).with_seq(7);
        assert!(frame.get().starts_with(r#"{"seq":7,"#), "{}", frame.get());
        assert_eq!(frame.value(), json!({"seq": 7, "type": "x", "n": 1}));
    }

    #[test]
    fn an_empty_object_gets_only_seq_and_a_non_object_is_unchanged() {
        assert_eq!(Frame::new(json!({})).with_seq(2).get(), r#"{"seq":2}"#);
        assert_eq!(Frame::new(json!([1, 2])).with_seq(2).get(), "[1,2]");
    }

    #[test]
    fn with_seq_writes_the_bytes_of_sequenced() {
        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Out {
            Update { n: u32, text: &'static str },
        }
        #[derive(Serialize)]
        struct Plain {
            a: &'static str,
        }
        #[derive(Serialize)]
        struct Empty {}
        let update = Out::Update { n: 1, text: "x" };
        let spliced = Frame::new(&update).with_seq(9);
        let typed = serde_json::to_string(&Sequenced {
            seq: 9,
            frame: &update,
        })
        .expect("sequenced");
        assert_eq!(spliced.get(), typed);
        assert_eq!(typed, r#"{"seq":9,"type":"update","n":1,"text":"x"}"#);
        let plain = Sequenced {
            seq: 3,
            frame: Plain { a: "b" },
        };
        assert_eq!(
            serde_json::to_string(&plain).expect("plain"),
            Frame::new(Plain { a: "b" }).with_seq(3).get()
        );
        assert_eq!(
            serde_json::to_string(&Sequenced {
                seq: 2,
                frame: Empty {}
            })
            .expect("empty"),
            Frame::new(Empty {}).with_seq(2).get()
        );
    }

    #[test]
    fn a_frame_survives_a_round_trip_inside_other_json_unchanged() {
        let frame = Frame::new(json!({"a": "b\"c", "n": [1, 2]}));
        #[derive(Serialize, Deserialize)]
        struct Outer {
            frame: Frame,
        }
        let text = serde_json::to_string(&Outer { frame }).expect("serialize");
        let back: Outer = serde_json::from_str(&text).expect("parse");
        assert_eq!(back.frame.get(), r#"{"a":"b\"c","n":[1,2]}"#);
    }
}
