//! What a domain is: a pure function from (state, command, context) to a new state, events to
//! fan out, replies for the sender and records for SQL, or a rejection with a catalogue code.
//! Domains implement [`Domain`]; the runtime (`crate::runtime`) does all the I/O around it, and
//! starts what a domain runs beside its commands through [`Domain::start`].

use crate::error::RuntimeError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tablewire_schemas::stored::Notice;
use tablewire_schemas::{
    Claims, Domain as DomainName, ErrorBody, ErrorCode, ErrorFrame, Frame, Origin,
};

/// Everything a domain may know about the command besides its payload. Built from the envelope,
/// so applying the same command twice sees the same context.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// When the edge accepted the command, ms since the Unix epoch. The domain's "now".
    pub now_ms: i64,
    /// The command's input stream sequence: unique and increasing per key.
    pub stream_seq: u64,
    /// The command's message id.
    pub message_id: &'a str,
    /// The tenant (from the token or the path).
    pub tenant: &'a str,
    /// The key (session, room, tenant, device).
    pub key: &'a str,
    /// The verified claims, when the command came with a token.
    pub claims: Option<&'a Claims>,
    /// Who sent it.
    pub origin: &'a Origin,
}

/// A command could not be applied; the state is unchanged and the sender gets an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection(pub ErrorBody);

impl Rejection {
    /// A rejection with a specific message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Rejection(ErrorBody::with_message(code, message))
    }
}

impl From<ErrorCode> for Rejection {
    fn from(code: ErrorCode) -> Self {
        Rejection(ErrorBody::new(code))
    }
}

/// What applying commands produced, collected across one key's batch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    /// Frames for every client of the key, in order, serialized once when emitted. The runtime
    /// adds `"seq"` to each.
    pub events: Vec<Frame>,
    /// Frames for the sender of a command only, with that command's origin.
    pub replies: Vec<(Origin, Frame)>,
    /// Records for SQL: `(kind, data)`; the runtime gives each a unique id.
    pub records: Vec<(String, Frame)>,
    /// Commands for other keys: `(domain, tenant, key, command)`.
    pub commands: Vec<(DomainName, String, String, Frame)>,
    /// Frames for other keys' subscribers, fanned out directly (see [`Effects::notify`]).
    pub notices: Vec<Notice>,
    /// Remove the key's state once these effects are published (see [`Effects::remove`]).
    pub remove: bool,
}

impl Effects {
    /// Fans a frame out to every client of the key.
    pub fn event(&mut self, frame: impl Serialize) {
        self.events.push(Frame::new(frame));
    }

    /// Sends a frame to the command's sender only.
    pub fn reply(&mut self, ctx: &Context<'_>, frame: impl Serialize) {
        self.replies.push((ctx.origin.clone(), Frame::new(frame)));
    }

    /// Persists a record of `kind`.
    pub fn record(&mut self, kind: &str, data: impl Serialize) {
        self.records.push((kind.to_string(), Frame::new(data)));
    }

    /// Sends `command` to `key` of `tenant` in `domain` (often another domain: an order
    /// announced on the tenant's events feed). It is applied there exactly once, after this
    /// command's state is written.
    pub fn emit(&mut self, domain: DomainName, tenant: &str, key: &str, command: impl Serialize) {
        self.commands.push((
            domain,
            tenant.to_string(),
            key.to_string(),
            Frame::new(command),
        ));
    }

    /// Sends `frame` to the subscribers of another domain's key as it is, without a command to
    /// that key: no JetStream round trip, no write of its state, no place in its sequence. For
    /// frames whose order only matters per emitting key (a device's scans on its tenant's
    /// feed); published with this key's events and again with them after a takeover (edges
    /// drop the repeat by its `Tw-Notice` place).
    pub fn notify(&mut self, domain: DomainName, tenant: &str, key: &str, frame: impl Serialize) {
        self.notices.push(Notice {
            domain,
            tenant: tenant.to_string(),
            key: key.to_string(),
            frame: Frame::new(frame),
        });
    }
}

impl Effects {
    /// Removes the key's state from KV after this command's state, events, records and
    /// commands are written and published (an expired room, archived by a record). The next
    /// command for the key starts from [`Domain::new_state`].
    pub fn remove(&mut self) {
        self.remove = true;
    }
}

/// The bytes `value` takes as JSON (as KV stores it), counted without building the text. For a
/// value that cannot be serialized, `usize::MAX`.
pub fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// The byte bound of a key's state when its domain names none ([`Domain::max_state_bytes`]).
pub const DEFAULT_MAX_STATE_BYTES: usize = 256 * 1024;

/// A typed frame as a JSON value (for [`Domain::error_frame`]). Frames are built from plain
/// structs and maps; they always serialize (anything else becomes `null`, not a panic).
pub fn to_value(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// I/O a domain asks the runtime to do for a key after its state is written (a pure `apply`
/// cannot). The outcome comes back to the same key as the command `outcome` builds, published
/// into the input stream with a message id made from `id`, so it is applied once even when the
/// follow-up runs twice. The runtime starts a follow-up when the written state asks for one
/// whose `id` differs from what the state before the write asked for.
pub struct FollowUp {
    /// Names this follow-up within its key; the same id is the same follow-up.
    pub id: String,
    /// What to do.
    pub action: FollowUpAction,
    /// Turns the outcome (a reply's payload, or why there was none) into a command.
    pub outcome: Box<dyn FnOnce(Result<bytes::Bytes, String>) -> Value + Send>,
}

/// The I/O of a [`FollowUp`].
pub enum FollowUpAction {
    /// A NATS request; the outcome is the reply's payload.
    Request {
        /// The subject (from `tablewire_nats::subject`).
        subject: String,
        /// The request body.
        payload: bytes::Bytes,
        /// How long to wait for a reply.
        timeout: std::time::Duration,
    },
    /// Only time: the outcome (empty) comes after the delay.
    Wait(std::time::Duration),
}

/// What a domain's background tasks are given when the runtime starts them ([`Domain::start`]).
pub struct Background {
    /// This handler's NATS connection.
    pub client: async_nats::Client,
    /// Becomes `true` when the handler stops; every task ends then.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// A domain: one kind of key (a display session, an order room, a tenant's POS, a device) and
/// the rules for changing it. Everything here is pure; it is unit-tested without NATS.
pub trait Domain: Send + Sync + 'static {
    /// Which domain this is.
    const NAME: DomainName;
    /// The state of one key, as stored in KV.
    type State: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// The commands, as edges put them in the envelope.
    type Command: DeserializeOwned + Send + 'static;

    /// The state of a key that has none yet.
    fn new_state(&self, ctx: &Context<'_>) -> Self::State;

    /// Applies one command. On `Err` the state must be exactly as it was.
    fn apply(
        &self,
        state: &mut Self::State,
        command: Self::Command,
        ctx: &Context<'_>,
        effects: &mut Effects,
    ) -> Result<(), Rejection>;

    /// The frame that tells a sender its command was rejected. Every domain of tablewire names
    /// its own, built by its protocol module in `tablewire_schemas` (`display::error_frame`, …)
    /// where the edge builds it too; the default is the common [`ErrorFrame`].
    fn error_frame(&self, error: &ErrorBody, ctx: &Context<'_>) -> Value {
        to_value(ErrorFrame {
            error: error.clone(),
            timestamp: ctx.now_ms,
        })
    }

    /// Most bytes one key's state may take as stored JSON. A command after which the state
    /// would be larger (and larger than before it) is refused with `STATE_FULL`, unless
    /// [`Domain::trim`] makes room; the state stays exactly as it was. The runtime also keeps it
    /// to at most half the server's `max_payload`, so that a write (state plus what the batch
    /// produced) always fits one NATS message. Checked by the runtime once per write on the
    /// common path; only a write past a bound is redone command by command.
    fn max_state_bytes(&self) -> usize {
        DEFAULT_MAX_STATE_BYTES
    }

    /// Makes a state that commands left over its bound take at most `budget` bytes, by
    /// dropping what this domain may drop (the oldest entries of a log of recent items), never
    /// the newest; returns whether it dropped anything. The runtime calls it on a batch's
    /// state before its write, and if that is still over, command by command: a command whose
    /// state does not fit even then is refused. The default drops nothing.
    fn trim(&self, _state: &mut Self::State, _budget: usize) -> bool {
        false
    }

    /// I/O to do after a write of this key's state (see [`FollowUp`]). Default: none.
    fn follow_up(&self, _state: &Self::State, _tenant: &str, _key: &str) -> Option<FollowUp> {
        None
    }

    /// How long after this write the key's state may vanish from KV by itself, or `None` to keep
    /// it until a command removes it (the default). `now_ms` is the time of the last command
    /// applied. The runtime puts it on the state write as a per-message TTL (whole seconds, at
    /// least one; nats-server removes the entry then), so it costs no extra operation; each
    /// write sets it anew. The next command for a vanished key starts from
    /// [`Domain::new_state`]. For state that only matters for a while (an idempotency claim).
    fn time_to_live(&self, _state: &Self::State, _now_ms: i64) -> Option<std::time::Duration> {
        None
    }

    /// Parts of the state kept as KV entries of their own (`resource::parts_bucket`, key
    /// `resource::part_key`; only domains in `resource::PARTS_DOMAINS`), so that the state's
    /// write after every batch does not copy them again (a POS order's body): those not written
    /// yet, as `(part name, JSON)`. The runtime sends them just before the state that refers
    /// to them and waits for them before publishing anything of the write, then calls
    /// [`Domain::parts_written`]. Default: none.
    fn unwritten_parts(&self, _state: &Self::State) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }

    /// Every part [`Domain::unwritten_parts`] returned is written.
    fn parts_written(&self, _state: &mut Self::State) {}

    /// Parts a state read from KV refers to but does not hold; the runtime fetches each and
    /// hands it to [`Domain::attach_part`] (a part KV no longer has is left out).
    fn missing_parts(&self, _state: &Self::State) -> Vec<String> {
        Vec::new()
    }

    /// Puts a fetched part into the state.
    fn attach_part(&self, _state: &mut Self::State, _part: &str, _json: &[u8]) {}

    /// Starts what this domain runs beside its commands (a sweeper, a watcher), before its
    /// partitions start; an error stops the handler from starting. The runtime awaits every
    /// task returned when the handler stops. Default: none.
    fn start(
        &self,
        background: Background,
    ) -> impl Future<Output = Result<Vec<tokio::task::JoinHandle<()>>, RuntimeError>> + Send {
        drop(background);
        async { Ok(Vec::new()) }
    }
}
