//! The messages of GraphQL over WebSocket, in both subprotocols a client may ask for with
//! `Sec-WebSocket-Protocol`: `graphql-transport-ws` (the npm `graphql-ws` library) and the
//! legacy `graphql-ws` of `subscriptions-transport-ws`. Client messages decode into one
//! [`ClientMessage`] whatever the protocol; server messages are encoded per protocol, with a
//! subscription's results written around a payload encoded once and shared
//! ([`Protocol::next`]).

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

/// The GraphQL-over-WebSocket subprotocol of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws`: `subscribe`, `next`, `complete`, `ping`/`pong`.
    TransportWs,
    /// `graphql-ws` (legacy `subscriptions-transport-ws`): `start`, `data`, `stop`, `ka`.
    Legacy,
}

impl Protocol {
    /// The protocol a client offered in `Sec-WebSocket-Protocol` (comma separated, in its
    /// order of preference); `None` when it offered neither.
    pub fn negotiate(offered: &str) -> Option<Self> {
        offered.split(',').map(str::trim).find_map(|p| match p {
            "graphql-transport-ws" => Some(Self::TransportWs),
            "graphql-ws" => Some(Self::Legacy),
            _ => None,
        })
    }

    /// The subprotocol's name, as the handshake answers it.
    pub fn name(self) -> &'static str {
        match self {
            Self::TransportWs => "graphql-transport-ws",
            Self::Legacy => "graphql-ws",
        }
    }

    /// `connection_ack`.
    pub fn ack(self) -> Bytes {
        Bytes::from_static(br#"{"type":"connection_ack"}"#)
    }

    /// What the server sends to show the connection is alive: `ping` (the client answers
    /// `pong`), or the legacy `ka` (no answer).
    pub fn keepalive(self) -> Bytes {
        match self {
            Self::TransportWs => Bytes::from_static(br#"{"type":"ping"}"#),
            Self::Legacy => Bytes::from_static(br#"{"type":"ka"}"#),
        }
    }

    /// The answer to a client's `ping`.
    pub fn pong(self) -> Bytes {
        Bytes::from_static(br#"{"type":"pong"}"#)
    }

    /// One result of subscription `id`: `payload` is the encoded `ExecutionResult`
    /// (`{"data":...}`), shared by every subscriber that selected the same fields.
    pub fn next(self, id: &str, payload: &[u8]) -> Bytes {
        Self::around(&self.next_prefix(id), payload)
    }

    /// What comes before a result of subscription `id` (made once per subscription).
    pub fn next_prefix(self, id: &str) -> Bytes {
        let kind: &[u8] = match self {
            Self::TransportWs => br#"{"type":"next","id":"#,
            Self::Legacy => br#"{"type":"data","id":"#,
        };
        let id = Value::from(id).to_string();
        let mut b = BytesMut::with_capacity(kind.len() + id.len() + 11);
        b.put_slice(kind);
        b.put_slice(id.as_bytes());
        b.put_slice(br#","payload":"#);
        b.freeze()
    }

    /// A result: `prefix` (from [`Self::next_prefix`]), the shared payload, `}`.
    pub fn around(prefix: &[u8], payload: &[u8]) -> Bytes {
        let mut b = BytesMut::with_capacity(prefix.len() + payload.len() + 1);
        b.put_slice(prefix);
        b.put_slice(payload);
        b.put_u8(b'}');
        b.freeze()
    }

    /// The errors that end subscription `id` (its request was refused): `error`, with the
    /// list of GraphQL errors (graphql-transport-ws) or the first one (legacy).
    pub fn error(self, id: &str, errors: &[GqlError]) -> Bytes {
        let payload = match self {
            Self::TransportWs => Value::Array(errors.iter().map(GqlError::to_json).collect()),
            Self::Legacy => errors
                .first()
                .map_or_else(|| Value::Object(Map::new()), GqlError::to_json),
        };
        let v = serde_json::json!({"type": "error", "id": id, "payload": payload});
        Bytes::from(v.to_string())
    }

    /// Errors that end operation `id`, as the schema wrote them (each `{message, ...}`).
    pub fn error_values(self, id: &str, errors: Vec<Value>) -> Bytes {
        let payload = match self {
            Self::TransportWs => Value::Array(errors),
            Self::Legacy => errors
                .into_iter()
                .next()
                .unwrap_or_else(|| Value::Object(Map::new())),
        };
        let v = serde_json::json!({"type": "error", "id": id, "payload": payload});
        Bytes::from(v.to_string())
    }

    /// Subscription `id` is over.
    pub fn complete(self, id: &str) -> Bytes {
        let v = serde_json::json!({"type": "complete", "id": id});
        Bytes::from(v.to_string())
    }

    /// The legacy protocol's refusal of a connection (`connection_error`), before it closes.
    pub fn connection_error(self, message: &str) -> Option<Bytes> {
        match self {
            Self::TransportWs => None,
            Self::Legacy => {
                let v = serde_json::json!({"type": "connection_error", "payload": {"message": message}});
                Some(Bytes::from(v.to_string()))
            }
        }
    }
}

/// A GraphQL error as results carry them: `{message, extensions: {code}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GqlError {
    /// What went wrong, for people.
    pub message: String,
    /// Hubbub's error code (`forbidden`, `bad_request`, ...), for programs.
    pub code: &'static str,
}

impl GqlError {
    /// An error with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code,
        }
    }

    /// `{message, extensions: {code}}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"message": self.message, "extensions": {"code": self.code}})
    }
}

/// A GraphQL request: what `subscribe` (or legacy `start`) carries, and what an HTTP POST
/// body holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    /// The document.
    pub query: String,
    /// Which operation of the document runs.
    pub operation_name: Option<String>,
    /// The variables' values.
    pub variables: Map<String, Value>,
}

impl Request {
    /// Reads a request object (`{query, operationName?, variables?}`).
    pub fn from_json(v: &Value) -> Result<Self, CodecError> {
        let o = v
            .as_object()
            .ok_or_else(|| CodecError::new("the payload is not an object"))?;
        let query = o
            .get("query")
            .and_then(Value::as_str)
            .ok_or_else(|| CodecError::new("the payload has no `query` string"))?
            .to_string();
        let operation_name = match o.get("operationName") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(CodecError::new("`operationName` is not a string")),
        };
        let variables = match o.get("variables") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(CodecError::new("`variables` is not an object")),
        };
        Ok(Self {
            query,
            operation_name,
            variables,
        })
    }
}

/// What a client sent, whatever its protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientMessage {
    /// `connection_init`, with its payload (credentials: `token`).
    Init(Map<String, Value>),
    /// `subscribe` (legacy `start`): run operation `request` as `id`.
    Subscribe {
        /// The operation's id, chosen by the client.
        id: String,
        /// The operation.
        request: Request,
    },
    /// `complete` (legacy `stop`): end operation `id`.
    Complete {
        /// The operation's id.
        id: String,
    },
    /// `ping`: answer `pong`.
    Ping,
    /// `pong`: the answer to the server's `ping`.
    Pong,
    /// Legacy `connection_terminate`: the client is leaving.
    Terminate,
}

/// A client message that could not be read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecError {
    /// What is wrong with it.
    pub message: String,
}

impl CodecError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CodecError {}

/// Reads one client text frame in `protocol`.
pub fn decode(protocol: Protocol, text: &[u8]) -> Result<ClientMessage, CodecError> {
    let v: Value = serde_json::from_slice(text)
        .map_err(|e| CodecError::new(format!("the message is not JSON: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| CodecError::new("the message is not an object"))?;
    let kind = o
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| CodecError::new("the message has no `type` string"))?;
    let id = || -> Result<String, CodecError> {
        match o.get("id") {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            // subscriptions-transport-ws numbers its operations.
            Some(Value::Number(n)) if protocol == Protocol::Legacy => Ok(n.to_string()),
            _ => Err(CodecError::new(format!(
                "a `{kind}` message needs a non-empty string `id`"
            ))),
        }
    };
    let payload = o.get("payload");
    match (protocol, kind) {
        (_, "connection_init") => match payload {
            None | Some(Value::Null) => Ok(ClientMessage::Init(Map::new())),
            Some(Value::Object(m)) => Ok(ClientMessage::Init(m.clone())),
            Some(_) => Err(CodecError::new(
                "the `connection_init` payload is not an object",
            )),
        },
        (Protocol::TransportWs, "subscribe") | (Protocol::Legacy, "start") => {
            let id = id()?;
            let request = Request::from_json(payload.unwrap_or(&Value::Null))?;
            Ok(ClientMessage::Subscribe { id, request })
        }
        (Protocol::TransportWs, "complete") | (Protocol::Legacy, "stop") => {
            Ok(ClientMessage::Complete { id: id()? })
        }
        (Protocol::TransportWs, "ping") => Ok(ClientMessage::Ping),
        (Protocol::TransportWs, "pong") => Ok(ClientMessage::Pong),
        (Protocol::Legacy, "connection_terminate") => Ok(ClientMessage::Terminate),
        (_, other) => Err(CodecError::new(format!(
            "unknown message type `{other}` for {}",
            protocol.name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_protocols_decode_to_the_same_messages() {
        let sub = ClientMessage::Subscribe {
            id: "1".into(),
            request: Request {
                query: "subscription { messages(room: \"a\") { data } }".into(),
                operation_name: None,
                variables: Map::new(),
            },
        };
        let modern = br#"{"type":"subscribe","id":"1","payload":{"query":"subscription { messages(room: \"a\") { data } }"}}"#;
        let legacy = br#"{"type":"start","id":1,"payload":{"query":"subscription { messages(room: \"a\") { data } }","variables":null}}"#;
        assert_eq!(decode(Protocol::TransportWs, modern).unwrap(), sub);
        assert_eq!(decode(Protocol::Legacy, legacy).unwrap(), sub);
        assert_eq!(
            decode(Protocol::Legacy, br#"{"type":"stop","id":"1"}"#).unwrap(),
            ClientMessage::Complete { id: "1".into() }
        );
        let init = br#"{"type":"connection_init","payload":{"token":"t"}}"#;
        match decode(Protocol::TransportWs, init).unwrap() {
            ClientMessage::Init(m) => assert_eq!(m["token"], "t"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        for (p, text, says) in [
            (Protocol::TransportWs, &b"{"[..], "not JSON"),
            (Protocol::TransportWs, b"[]", "not an object"),
            (Protocol::TransportWs, br#"{"id":"1"}"#, "no `type`"),
            (
                Protocol::TransportWs,
                br#"{"type":"start","id":"1"}"#,
                "unknown message type `start`",
            ),
            (
                Protocol::Legacy,
                br#"{"type":"subscribe","id":"1"}"#,
                "unknown message type `subscribe`",
            ),
            (
                Protocol::TransportWs,
                br#"{"type":"subscribe","payload":{"query":"{a}"}}"#,
                "non-empty string `id`",
            ),
            (
                Protocol::TransportWs,
                br#"{"type":"subscribe","id":7,"payload":{"query":"{a}"}}"#,
                "non-empty string `id`",
            ),
            (
                Protocol::TransportWs,
                br#"{"type":"subscribe","id":"1","payload":{}}"#,
                "no `query`",
            ),
            (
                Protocol::TransportWs,
                br#"{"type":"subscribe","id":"1","payload":{"query":"{a}","variables":[]}}"#,
                "`variables`",
            ),
            (
                Protocol::TransportWs,
                br#"{"type":"connection_init","payload":5}"#,
                "payload is not an object",
            ),
        ] {
            let e = decode(p, text).unwrap_err();
            assert!(e.message.contains(says), "{e} should say {says}");
        }
    }

    #[test]
    fn a_result_is_written_around_a_shared_payload() {
        let payload = br#"{"data":{"messages":{"data":1}}}"#;
        let modern = Protocol::TransportWs.next("a\"b", payload);
        let v: Value = serde_json::from_slice(&modern).unwrap();
        assert_eq!(v["type"], "next");
        assert_eq!(v["id"], "a\"b");
        assert_eq!(v["payload"]["data"]["messages"]["data"], 1);
        let legacy: Value = serde_json::from_slice(&Protocol::Legacy.next("1", payload)).unwrap();
        assert_eq!(legacy["type"], "data");
        let e = GqlError::new("forbidden", "no");
        let modern: Value =
            serde_json::from_slice(&Protocol::TransportWs.error("1", std::slice::from_ref(&e)))
                .unwrap();
        assert_eq!(modern["payload"][0]["extensions"]["code"], "forbidden");
        let legacy: Value = serde_json::from_slice(&Protocol::Legacy.error("1", &[e])).unwrap();
        assert_eq!(legacy["payload"]["message"], "no");
    }

    #[test]
    fn the_protocol_is_the_first_offered_that_is_known() {
        assert_eq!(
            Protocol::negotiate("foo, graphql-ws, graphql-transport-ws"),
            Some(Protocol::Legacy)
        );
        assert_eq!(
            Protocol::negotiate("graphql-transport-ws"),
            Some(Protocol::TransportWs)
        );
        assert_eq!(Protocol::negotiate("chat"), None);
    }
}
