//! A subscription as Hubbub runs it. async-graphql validates the document against the
//! schema first ([`super::schema`]); this module reads the validated operation into a
//! [`Plan`]: the root field (`messages(room)`, `direct`, `notifications`, `presence(room)`)
//! with its arguments, and the [`Shape`] of each result (which fields, under which keys).
//! Subscribers with the same shape share one encoded payload per delivery
//! ([`Shape::encode`], cached on the delivery by the hub).

use std::sync::Arc;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::{Name, Positioned};
use async_graphql_value::Value as GqlValue;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::codec::GqlError;
use crate::hub::{Body, Delivery};
use crate::protocol::json::ObjectWriter;

/// What feeds a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The messages of a room (the subscriber joins it).
    Messages(String),
    /// What is addressed to the subscriber rather than to a room: direct messages, pushes
    /// to the user, and broadcasts to everyone.
    Direct,
    /// The subscriber's notifications.
    Notifications,
    /// Who joins and leaves a room (the subscriber joins it).
    Presence(String),
}

impl Source {
    /// The room a subscriber joins for it.
    pub fn room(&self) -> Option<&str> {
        match self {
            Self::Messages(r) | Self::Presence(r) => Some(r),
            Self::Direct | Self::Notifications => None,
        }
    }

    /// Whether delivery `d` is a result of this subscription, for connection `me` (its
    /// id: a message addressed to it is direct).
    pub fn wants(&self, d: &Delivery, me: &str) -> bool {
        match (self, &d.body) {
            (Self::Messages(room), Body::Message(m)) => match &m.room {
                Some(r) => **r == **room,
                // Addressed to several rooms (or by another server): through this one.
                None => d.via().iter().any(|r| **r == **room),
            },
            // Kept direct messages name their addressee; pushes to the user, to this
            // connection and to everyone name no room they came through.
            (Self::Direct, Body::Message(m)) => {
                m.to.is_some()
                    || (m.room.is_none()
                        && d.via()
                            .iter()
                            .all(|r| crate::hub::room::is_internal(r) || **r == *me))
            }
            (Self::Presence(room), Body::Presence { room: r, .. }) => **r == **room,
            (Self::Notifications, Body::Notice { name, .. }) => &**name == "notification",
            _ => false,
        }
    }

    /// The GraphQL type of its results.
    fn type_name(&self) -> &'static str {
        match self {
            Self::Messages(_) | Self::Direct => "Message",
            Self::Notifications => "Notification",
            Self::Presence(_) => "PresenceEvent",
        }
    }
}

/// One field of a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaf {
    Room,
    Event,
    Data,
    From,
    To,
    Seq,
    Ts,
    User,
    Joined,
    Count,
    Id,
    Read,
    Typename(&'static str),
}

impl Leaf {
    fn of(type_name: &'static str, field: &str) -> Option<Self> {
        Some(match (type_name, field) {
            (_, "__typename") => Self::Typename(type_name),
            ("Message" | "PresenceEvent", "room") => Self::Room,
            ("Message" | "Notification", "event") => Self::Event,
            ("Message" | "Notification", "data") => Self::Data,
            ("Message", "from") => Self::From,
            ("Message", "to") => Self::To,
            ("Message", "seq") => Self::Seq,
            ("Message" | "Notification", "ts") => Self::Ts,
            ("PresenceEvent", "user") => Self::User,
            ("PresenceEvent", "joined") => Self::Joined,
            ("PresenceEvent", "count") => Self::Count,
            ("Notification", "id") => Self::Id,
            ("Notification", "read") => Self::Read,
            _ => return None,
        })
    }
}

/// Which fields a result holds, under which keys: `{"data":{root:{key:field,...}}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    root: String,
    leaves: Vec<(String, Leaf)>,
    key: String,
}

impl Shape {
    /// What identifies the shape: subscribers with equal keys share payloads.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `ExecutionResult` of delivery `d` in this shape (`{"data":{...}}`).
    pub fn encode(&self, d: &Delivery) -> Bytes {
        let mut w = ObjectWriter::with_capacity(128);
        let null = b"null".as_slice();
        match &d.body {
            Body::Message(m) => {
                let data = self
                    .leaves
                    .iter()
                    .any(|(_, l)| *l == Leaf::Data)
                    .then(|| m.v1_data());
                for (k, leaf) in &self.leaves {
                    match leaf {
                        Leaf::Room => w.value(k, &m.shown_room()),
                        Leaf::Event => w.str(k, &m.event),
                        Leaf::Data => w.raw(k, data.as_deref().unwrap_or(null)),
                        Leaf::From => w.value(k, &m.from.as_deref()),
                        Leaf::To => w.value(k, &m.to.as_deref()),
                        Leaf::Seq => w.value(k, &m.seq),
                        Leaf::Ts => w.u64(k, m.ts),
                        Leaf::Typename(t) => w.str(k, t),
                        _ => w.raw(k, null),
                    };
                }
            }
            Body::Presence {
                room,
                user,
                joined,
                count,
                ..
            } => {
                for (k, leaf) in &self.leaves {
                    match leaf {
                        Leaf::Room => w.str(k, room),
                        Leaf::User => w.str(k, user),
                        Leaf::Joined => w.bool(k, *joined),
                        Leaf::Count => w.u64(k, *count),
                        Leaf::Typename(t) => w.str(k, t),
                        _ => w.raw(k, null),
                    };
                }
            }
            Body::Notice { fields, .. } => {
                let v: Map<String, Value> =
                    serde_json::from_slice(fields.as_bytes()).unwrap_or_default();
                for (k, leaf) in &self.leaves {
                    let name = match leaf {
                        Leaf::Id => "id",
                        Leaf::Event => "event",
                        Leaf::Data => "data",
                        Leaf::Ts => "ts",
                        Leaf::Read => "read",
                        Leaf::Typename(t) => {
                            w.str(k, t);
                            continue;
                        }
                        _ => "",
                    };
                    match v.get(name) {
                        Some(Value::Bool(false)) | None if *leaf == Leaf::Read => w.bool(k, false),
                        Some(x) => w.value(k, x),
                        None => w.raw(k, null),
                    };
                }
            }
        }
        let result = w.finish();
        let mut data = ObjectWriter::with_capacity(result.len() + self.root.len() + 8);
        data.raw(&self.root, &result);
        let mut out = ObjectWriter::with_capacity(result.len() + self.root.len() + 16);
        out.raw("data", &data.finish());
        out.finish()
    }
}

/// A subscription to run: what feeds it and how its results are written.
#[derive(Clone, Debug)]
pub struct Plan {
    /// What feeds it.
    pub source: Source,
    /// How each result is written.
    pub shape: Arc<Shape>,
}

/// The operation of `doc` a request runs: the one named `name`, or the only one.
pub fn operation<'a>(
    doc: &'a ExecutableDocument,
    name: Option<&str>,
) -> Result<&'a Positioned<OperationDefinition>, GqlError> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Ok(op),
        (DocumentOperations::Multiple(ops), Some(n)) => ops
            .get(n)
            .ok_or_else(|| GqlError::new("bad_request", format!("no operation named `{n}`"))),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            Ok(ops.values().next().expect("one operation"))
        }
        (DocumentOperations::Multiple(_), None) => Err(GqlError::new(
            "bad_request",
            "the document has several operations: name one with `operationName`",
        )),
    }
}

/// Whether the operation `name` of `doc` is a subscription.
pub fn is_subscription(doc: &ExecutableDocument, name: Option<&str>) -> bool {
    operation(doc, name).is_ok_and(|op| op.node.ty == OperationType::Subscription)
}

/// Reads a validated subscription into a plan.
pub fn plan(
    doc: &ExecutableDocument,
    name: Option<&str>,
    variables: &Map<String, Value>,
) -> Result<Plan, GqlError> {
    let op = operation(doc, name)?;
    // Variables not given take their definitions' defaults.
    let mut with_defaults = variables.clone();
    for def in &op.node.variable_definitions {
        let name = def.node.name.node.as_str();
        if !with_defaults.contains_key(name) {
            if let Some(v) = &def.node.default_value {
                if let Ok(json) = v.node.clone().into_json() {
                    with_defaults.insert(name.to_string(), json);
                }
            }
        }
    }
    let variables = &with_defaults;
    let ctx = Ctx { doc, variables };
    let mut roots = Vec::new();
    ctx.fields(&op.node.selection_set.node, "Subscription", &mut roots)?;
    let [root] = roots.as_slice() else {
        return Err(GqlError::new(
            "bad_request",
            "a subscription selects exactly one field",
        ));
    };
    let (key, field) = root;
    let room = || -> Result<String, GqlError> {
        let v = field
            .get_argument("room")
            .ok_or_else(|| GqlError::new("bad_request", "`room` is required"))?;
        match ctx.value(&v.node) {
            Value::String(s) => Ok(s),
            _ => Err(GqlError::new("bad_request", "`room` is a string")),
        }
    };
    let source = match field.name.node.as_str() {
        "messages" => Source::Messages(room()?),
        "presence" => Source::Presence(room()?),
        "direct" => Source::Direct,
        "notifications" => Source::Notifications,
        other => {
            return Err(GqlError::new(
                "bad_request",
                format!("unknown subscription `{other}`"),
            ))
        }
    };
    let type_name = source.type_name();
    let mut selected = Vec::new();
    ctx.fields(&field.selection_set.node, type_name, &mut selected)?;
    let mut leaves: Vec<(String, Leaf)> = Vec::new();
    for (k, f) in selected {
        if leaves.iter().any(|(have, _)| *have == k) {
            continue;
        }
        let leaf = Leaf::of(type_name, &f.name.node).ok_or_else(|| {
            GqlError::new(
                "bad_request",
                format!("`{type_name}` has no field `{}`", f.name.node),
            )
        })?;
        leaves.push((k, leaf));
    }
    let mut shape_key = format!("{key}:{type_name}{{");
    for (k, l) in &leaves {
        shape_key.push_str(&format!("{k}={l:?},"));
    }
    shape_key.push('}');
    Ok(Plan {
        source,
        shape: Arc::new(Shape {
            root: key.clone(),
            leaves,
            key: shape_key,
        }),
    })
}

/// Reads selections with the request's variables and fragments.
struct Ctx<'a> {
    doc: &'a ExecutableDocument,
    variables: &'a Map<String, Value>,
}

impl<'a> Ctx<'a> {
    /// The value of an argument, variables substituted.
    fn value(&self, v: &GqlValue) -> Value {
        match v {
            GqlValue::Variable(name) => self
                .variables
                .get(name.as_str())
                .cloned()
                .unwrap_or(Value::Null),
            other => other
                .clone()
                .into_const()
                .and_then(|c| c.into_json().ok())
                .unwrap_or(Value::Null),
        }
    }

    /// Whether `@skip`/`@include` leave a selection out.
    fn skipped(&self, directives: &[Positioned<async_graphql::parser::types::Directive>]) -> bool {
        directives.iter().any(|d| {
            let flag = d
                .node
                .get_argument("if")
                .map(|v| self.value(&v.node) == Value::Bool(true));
            match d.node.name.node.as_str() {
                "skip" => flag == Some(true),
                "include" => flag == Some(false),
                _ => false,
            }
        })
    }

    /// The fields `set` selects on type `on`, fragments flattened, in order, each with its
    /// response key.
    fn fields(
        &self,
        set: &'a SelectionSet,
        on: &str,
        out: &mut Vec<(String, &'a async_graphql::parser::types::Field)>,
    ) -> Result<(), GqlError> {
        for item in &set.items {
            if self.skipped(item.node.directives()) {
                continue;
            }
            match &item.node {
                Selection::Field(f) => {
                    out.push((f.node.response_key().node.to_string(), &f.node));
                }
                Selection::InlineFragment(frag) => {
                    let applies = frag
                        .node
                        .type_condition
                        .as_ref()
                        .is_none_or(|t| t.node.on.node == on);
                    if applies {
                        self.fields(&frag.node.selection_set.node, on, out)?;
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name: &Name = &spread.node.fragment_name.node;
                    let frag = self.doc.fragments.get(name).ok_or_else(|| {
                        GqlError::new("bad_request", format!("unknown fragment `{name}`"))
                    })?;
                    if frag.node.type_condition.node.on.node == on {
                        self.fields(&frag.node.selection_set.node, on, out)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Message, MessageBody, Payload};
    use crate::protocol::v1::RawJson;

    fn plan_of(query: &str, vars: Value) -> Result<Plan, GqlError> {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        let vars = vars.as_object().cloned().unwrap_or_default();
        plan(&doc, None, &vars)
    }

    fn message(room: &str, data: &str) -> Arc<Delivery> {
        Delivery::new(Body::Message(Message {
            ns: "/".into(),
            room: Some(room.into()),
            event: "chat".into(),
            body: MessageBody::Hub(Payload::Json(
                RawJson::parse(Bytes::from(data.to_string())).unwrap(),
            )),
            from: Some("ann".into()),
            to: None,
            seq: Some(4),
            ts: 1_700_000_000_000,
            offset: None,
        }))
    }

    #[test]
    fn a_subscription_becomes_its_source_and_shape() {
        let p = plan_of(
            r#"subscription S($r: String!) { m: messages(room: $r) { data from ... on Message { seq } ...F __typename skipped: room @skip(if: true) } }
               fragment F on Message { event ts }"#,
            serde_json::json!({"r": "lobby"}),
        )
        .unwrap();
        assert_eq!(p.source, Source::Messages("lobby".into()));
        let d = message("lobby", r#"{"text":"hi"}"#);
        assert!(p.source.wants(&d, "me"));
        assert!(!p.source.wants(&message("other", "1"), "me"));
        let v: Value = serde_json::from_slice(&p.shape.encode(&d)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"data": {"m": {
                "data": {"text": "hi"}, "from": "ann", "seq": 4, "event": "chat",
                "ts": 1_700_000_000_000u64, "__typename": "Message"
            }}})
        );
        // The same selection written differently has the same shape.
        let q = plan_of(
            r#"subscription { m: messages(room: "lobby") { data from seq event ts __typename } }"#,
            Value::Null,
        )
        .unwrap();
        assert_eq!(p.shape.key(), q.shape.key());
        let other = plan_of(
            r#"subscription { messages(room: "lobby") { data } }"#,
            Value::Null,
        )
        .unwrap();
        assert_ne!(p.shape.key(), other.shape.key());
    }

    #[test]
    fn a_message_to_several_rooms_reaches_each_rooms_subscription_not_direct() {
        let to_many = |rooms: &[&str]| {
            let d = message("x", "1");
            let Body::Message(m) = &d.body else {
                unreachable!()
            };
            let d = Delivery::new(Body::Message(Message {
                room: None,
                ..m.clone()
            }));
            let rooms: Vec<Arc<str>> = rooms.iter().map(|r| Arc::from(*r)).collect();
            d.set_via(&rooms);
            d
        };
        let lobby = Source::Messages("lobby".into());
        let d = to_many(&["lobby", "hall"]);
        assert!(lobby.wants(&d, "me"));
        assert!(!Source::Messages("attic".into()).wants(&d, "me"));
        assert!(!Source::Direct.wants(&d, "me"), "not addressed to the user");
        // Addressed to this connection, or to a user (an internal room): direct.
        assert!(Source::Direct.wants(&to_many(&["me"]), "me"));
        let user = crate::hub::user_room("ann");
        assert!(Source::Direct.wants(&to_many(&[&user]), "me"));
        assert!(!lobby.wants(&to_many(&[&user]), "me"));
    }

    #[test]
    fn other_sources() {
        for (q, want) in [
            ("subscription { direct { data } }", Source::Direct),
            (
                "subscription { notifications { id read } }",
                Source::Notifications,
            ),
            (
                r#"subscription { presence(room: "r") { user joined count } }"#,
                Source::Presence("r".into()),
            ),
        ] {
            assert_eq!(plan_of(q, Value::Null).unwrap().source, want);
        }
        // Defaults of variables count, for arguments and directives.
        let p = plan_of(
            r#"subscription ($r: String = "dflt", $x: Boolean = true) { messages(room: $r) { data seq @include(if: $x) } }"#,
            Value::Null,
        )
        .unwrap();
        assert_eq!(p.source, Source::Messages("dflt".into()));
        assert!(p.shape.key().contains("Seq"), "{}", p.shape.key());
        assert!(plan_of("subscription { nothing { data } }", Value::Null).is_err());
        assert!(plan_of("subscription { messages(room: 5) { data } }", Value::Null).is_err());
        assert!(plan_of(
            "subscription { messages(room: \"a\") { nope } }",
            Value::Null
        )
        .is_err());
    }
}
