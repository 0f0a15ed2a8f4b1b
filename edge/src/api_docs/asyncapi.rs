//! The AsyncAPI 3 document of the edge's WebSockets and of the NATS subjects (the contract for
//! handlers and transcribers written in other languages), built from
//! [`super::endpoints::ENDPOINTS`], the subject functions of [`tablewire_nats::subject`] and the
//! schemas of `schemas/json/`. Served at `/asyncapi.json`.

use super::components::{component_schemas, schema_ref, template_parameters};
use super::endpoints::{ENDPOINTS, Kind};
use serde_json::{Map, Value, json};
use tablewire_nats::subject;
use tablewire_schemas::Domain;

/// The document.
pub fn asyncapi() -> Value {
    let mut doc = Document::default();
    for endpoint in ENDPOINTS {
        if let Kind::WebSocket { receives, sends } = endpoint.kind {
            doc.socket(endpoint.path, endpoint.summary, receives, sends);
        }
    }
    for &domain in Domain::ALL {
        doc.subjects_of(domain);
    }
    doc.transcriber();
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "tablewire (WebSockets and NATS subjects)",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The WebSocket endpoints of a tablewire edge, and the NATS subjects between edges, \
                            handlers, the SQL writer and transcribers: what a handler or transcriber written in \
                            another language reads and writes. Generated from the edge's route table, the subject \
                            functions of the nats crate and the wire types in schemas/. Ids in subjects are encoded \
                            as one token each (letters, digits, `_`, `-` as they are; anything else as `=` and hex). \
                            The HTTP endpoints are in /openapi.json.",
        },
        "servers": {
            "edge": {
                "host": "127.0.0.1:8080",
                "protocol": "ws",
                "description": "An edge (`tablewire dev` listens here by default)",
            },
            "nats": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "The NATS server or cluster behind the edges and handlers (JetStream enabled)",
            },
        },
        "channels": doc.channels,
        "operations": doc.operations,
        "components": { "schemas": component_schemas(), "messages": doc.messages },
    })
}

/// Markers passed to the subject functions where a subject has a variable token.
const TENANT: &str = "TENANTMARK";
const KEY: &str = "KEYMARK";
const KIND: &str = "KINDMARK";
const REASON: &str = "REASONMARK";
const EDGE: &str = "EDGEMARK";

/// A subject with its variable tokens written as `{tenant}`, `{key}`, … .
fn template(subject: &str) -> String {
    subject
        .replace(TENANT, "{tenant}")
        .replace(KEY, "{key}")
        .replace(KIND, "{kind}")
        .replace(REASON, "{reason}")
        .replace(EDGE, "{edge}")
}

fn parameter_description(name: &str) -> &'static str {
    match name {
        "tenant" => {
            "The tenant (restaurant), from the verified token or the path; `_` for display sessions"
        }
        "key" => {
            "The key inside the domain and tenant: a session, room, tenant or device id (`_` for the events feed)"
        }
        "kind" => "The kind of record, naming its SQL table",
        "reason" => "Why the command was parked (a snake_case word)",
        "edge" => "The id of an edge node",
        _ => "A path segment",
    }
}

/// The channels, operations and messages gathered so far.
#[derive(Default)]
struct Document {
    channels: Map<String, Value>,
    operations: Map<String, Value>,
    messages: Map<String, Value>,
}

impl Document {
    fn socket(&mut self, path: &str, summary: &str, receives: Option<&str>, sends: Option<&str>) {
        let id = format!("ws{}", slug(path));
        let client = self.schema_message(
            receives,
            "A client frame (see the README for this endpoint)",
        );
        let server =
            self.schema_message(sends, "A server frame (see the README for this endpoint)");
        self.channel(
            &id,
            path,
            "edge",
            summary,
            &[("client", client), ("server", server)],
        );
        self.operation(
            &format!("{id}_receive"),
            "receive",
            &id,
            "client",
            "What clients send over this socket",
        );
        self.operation(
            &format!("{id}_send"),
            "send",
            &id,
            "server",
            "What the edge sends over this socket",
        );
    }

    fn subjects_of(&mut self, domain: Domain) {
        let envelope = self.message(
            "envelope",
            json!({
                "name": "envelope",
                "title": "A client command in its envelope",
                "contentType": "application/json",
                "summary": "An accepted client command on its way to a handler; `Nats-Msg-Id` is the envelope's `id`",
                "payload": schema_ref("envelope"),
            }),
        );
        let id = format!("nats_in_{domain}");
        self.channel(
            &id,
            &template(&subject::input(domain, TENANT, KEY)),
            "nats",
            "Commands for one key, published by edges into the domain's input stream (deduplicated by \
             `Nats-Msg-Id`); the stream stores them with a partition token after the domain, and one \
             consumer per partition applies them in order",
            &[("command", envelope)],
        );
        self.operation(
            &format!("{id}_receive"),
            "receive",
            &id,
            "command",
            "A handler of the domain applies commands",
        );

        let event = match domain {
            Domain::Display => Some("display.server"),
            Domain::Pos => Some("pos.server"),
            Domain::Events => Some("events.event"),
            _ => None,
        };
        let event = self.schema_message(
            event,
            "The client frame the domain's sockets send, `seq` included",
        );
        let id = format!("nats_out_{domain}");
        self.channel(
            &id,
            &template(&subject::output(domain, TENANT, KEY)),
            "nats",
            "Events for every client of one key (core NATS), with the key's sequence in the `Tw-Seq` header \
             (notices from other keys carry `Tw-Notice` instead); edges with a client of the key listen",
            &[("event", event)],
        );
        self.operation(
            &format!("{id}_send"),
            "send",
            &id,
            "event",
            "A handler fans out what it applied",
        );

        let record = self.message(
            "record",
            json!({
                "name": "record",
                "title": "A business record for SQL",
                "contentType": "application/json",
                "summary": "One record, or a JSON array of records of one tenant and kind",
                "payload": { "oneOf": [schema_ref("record"), { "type": "array", "items": schema_ref("record") }] },
            }),
        );
        let id = format!("nats_rec_{domain}");
        self.channel(
            &id,
            &template(&subject::record(domain, TENANT, KIND)),
            "nats",
            "Records on their way to SQL (the records stream)",
            &[("record", record)],
        );
        self.operation(
            &format!("{id}_send"),
            "send",
            &id,
            "record",
            "A handler publishes records; the SQL writer stores them",
        );

        let parked = self.message(
            "parked",
            json!({
                "name": "parked",
                "title": "A command that could not be applied",
                "contentType": "application/json",
                "summary": "The command's payload as it was stored, with its reason in the `Tw-Parked-…` headers",
                "payload": schema_ref("envelope"),
            }),
        );
        let id = format!("nats_parked_{domain}");
        self.channel(
            &id,
            &template(&subject::parked(domain, REASON)),
            "nats",
            "Commands a handler could not apply (the parked stream)",
            &[("parked", parked)],
        );
        self.operation(
            &format!("{id}_send"),
            "send",
            &id,
            "parked",
            "A handler parks a command with its reason",
        );

        if domain == Domain::Display {
            let reply = self.message(
                "reply",
                json!({
                    "name": "reply",
                    "title": "A reply to one sender",
                    "contentType": "application/json",
                    "summary": "A handler's answer to the connection or HTTP request in the envelope's `origin` \
                                (`Tw-Conn` or `Tw-Request` header)",
                    "payload": { "type": "object" },
                }),
            );
            let id = "nats_edge_inbox";
            self.channel(
                id,
                &template(&subject::edge_inbox(EDGE)),
                "nats",
                "Replies for single senders on one edge (core NATS)",
                &[("reply", reply)],
            );
            self.operation(
                &format!("{id}_send"),
                "send",
                id,
                "reply",
                "A handler answers one sender",
            );
        }
    }

    fn transcriber(&mut self) {
        let request = self.schema_message(Some("voice.transcribe.request"), "");
        // The reply channel below names this message.
        self.schema_message(Some("voice.transcribe.reply"), "");
        let id = "nats_transcribe";
        self.channel(
            id,
            subject::TRANSCRIBE,
            "nats",
            &format!(
                "Transcription requests (core NATS request/reply). Transcribers subscribe in the queue group \
                 `{}`, so each request goes to one of them, and answer on the request's reply subject",
                subject::TRANSCRIBER_GROUP
            ),
            &[("request", request)],
        );
        self.channels.insert(
            "nats_transcribe_reply".into(),
            json!({
                "address": null,
                "description": "The reply subject of one transcription request (a NATS inbox)",
                "servers": [{ "$ref": "#/servers/nats" }],
                "messages": { "reply": { "$ref": "#/components/messages/voice.transcribe.reply" } },
            }),
        );
        self.operations.insert(
            format!("{id}_send"),
            json!({
                "action": "send",
                "summary": "The voice handler asks a transcriber and waits for the reply",
                "channel": { "$ref": format!("#/channels/{id}") },
                "messages": [{ "$ref": format!("#/channels/{id}/messages/request") }],
                "reply": {
                    "channel": { "$ref": "#/channels/nats_transcribe_reply" },
                    "messages": [{ "$ref": "#/channels/nats_transcribe_reply/messages/reply" }],
                },
            }),
        );
    }

    /// A message whose payload is a `schemas/json/` document, or any JSON object with
    /// `otherwise` as its summary when there is none. Returns its component name.
    fn schema_message(&mut self, schema: Option<&str>, otherwise: &str) -> String {
        match schema {
            Some(name) => self.message(
                name,
                json!({
                    "name": name,
                    "title": name,
                    "contentType": "application/json",
                    "summary": format!("`schemas/json/{name}.json`"),
                    "payload": schema_ref(name),
                }),
            ),
            None => {
                let name = format!("untyped.{}", self.messages.len());
                self.message(
                    &name,
                    json!({
                        "contentType": "application/json",
                        "summary": otherwise,
                        "payload": { "type": "object" },
                    }),
                )
            }
        }
    }

    fn message(&mut self, name: &str, message: Value) -> String {
        self.messages.entry(name.to_string()).or_insert(message);
        name.to_string()
    }

    fn channel(
        &mut self,
        id: &str,
        address: &str,
        server: &str,
        description: &str,
        messages: &[(&str, String)],
    ) {
        let mut channel = json!({
            "address": address,
            "description": description,
            "servers": [{ "$ref": format!("#/servers/{server}") }],
            "messages": messages
                .iter()
                .map(|(key, message)| {
                    (key.to_string(), json!({ "$ref": format!("#/components/messages/{message}") }))
                })
                .collect::<Map<String, Value>>(),
        });
        let parameters: Map<String, Value> = template_parameters(address)
            .into_iter()
            .map(|name| {
                (
                    name.to_string(),
                    json!({ "description": parameter_description(name) }),
                )
            })
            .collect();
        if !parameters.is_empty() {
            channel["parameters"] = Value::Object(parameters);
        }
        self.channels.insert(id.to_string(), channel);
    }

    fn operation(&mut self, id: &str, action: &str, channel: &str, message: &str, summary: &str) {
        self.operations.insert(
            id.to_string(),
            json!({
                "action": action,
                "summary": summary,
                "channel": { "$ref": format!("#/channels/{channel}") },
                "messages": [{ "$ref": format!("#/channels/{channel}/messages/{message}") }],
            }),
        );
    }
}

/// `_session_id_display` for `/session/{id}/display`; `_root` for `/`.
fn slug(path: &str) -> String {
    let words: Vec<&str> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect();
    if words.is_empty() {
        "_root".to_string()
    } else {
        words.iter().map(|word| format!("_{word}")).collect()
    }
}
