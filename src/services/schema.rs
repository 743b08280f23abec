//! The `chat` message schema, the seeds' message validator (DESIGN.md, "Services"): a room
//! whose `schema` setting is `chat` accepts only data of the form
//! `{type: "chat" | "system", payload: {content: string (1..=4000 characters), to?: user}}`.
//! Anything else is `bad_request` with a message naming the field; `system` messages come
//! from the server's API only.

use serde_json::Value;

use crate::error::HubError;
use crate::hub::{MessageBody, Payload};

/// The schema's name, as rooms name it.
pub const CHAT: &str = "chat";

/// The longest `payload.content`, in characters.
pub const MAX_CONTENT: usize = 4000;

/// Checks a chat message's data; `from_client` is false for the server's own messages.
pub fn check_chat(data: &Value, from_client: bool) -> Result<(), HubError> {
    let bad = |m: &str| Err(HubError::bad_request(m.to_string()));
    let Some(obj) = data.as_object() else {
        return bad("`data` must be an object {type, payload}");
    };
    if let Some(k) = obj.keys().find(|k| *k != "type" && *k != "payload") {
        return Err(HubError::bad_request(format!(
            "`{k}` is not a field of a chat message (type, payload)"
        )));
    }
    match obj.get("type") {
        None => return bad("type is required"),
        Some(Value::String(t)) if t == "chat" => {}
        Some(Value::String(t)) if t == "system" => {
            if from_client {
                return bad("type `system` is sent by the server only");
            }
        }
        Some(_) => return bad("type must be \"chat\" or \"system\""),
    }
    let Some(payload) = obj.get("payload") else {
        return bad("payload is required");
    };
    let Some(payload) = payload.as_object() else {
        return bad("payload must be an object {content, to?}");
    };
    if let Some(k) = payload.keys().find(|k| *k != "content" && *k != "to") {
        return Err(HubError::bad_request(format!(
            "`payload.{k}` is not a field of a chat message (content, to)"
        )));
    }
    match payload.get("content") {
        None => return bad("payload.content is required"),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if n == 0 || n > MAX_CONTENT {
                return Err(HubError::bad_request(format!(
                    "payload.content must have 1 to {MAX_CONTENT} characters (it has {n})"
                )));
            }
        }
        Some(_) => return bad("payload.content must be a string"),
    }
    match payload.get("to") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 200 => {}
        Some(_) => return bad("payload.to must be a user name (1 to 200 bytes)"),
    }
    Ok(())
}

/// The hub's side of [`check_chat`]: the data of a hub message, or the first argument of a
/// Socket.IO event.
pub fn check_chat_body(body: &MessageBody, from_client: bool) -> Result<(), HubError> {
    match body {
        MessageBody::Hub(Payload::Json(raw)) => check_chat(&raw.to_value(), from_client),
        MessageBody::Hub(Payload::Binary(_)) => Err(HubError::bad_request(
            "`data` must be an object {type, payload}, not binary",
        )),
        MessageBody::Args(args) => match args.values.as_slice() {
            [one] if args.bin.is_empty() => check_chat(one, from_client),
            _ => Err(HubError::bad_request(
                "a chat message is one argument {type, payload}",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value, client: bool) -> String {
        check_chat(&v, client).unwrap_err().message
    }

    #[test]
    fn accepts_chat_and_server_system_messages() {
        let ok = json!({"type": "chat", "payload": {"content": "hi", "to": "bob"}});
        assert!(check_chat(&ok, true).is_ok());
        let sys = json!({"type": "system", "payload": {"content": "maintenance at 5"}});
        assert!(check_chat(&sys, false).is_ok());
        let long = json!({"type": "chat", "payload": {"content": "é".repeat(MAX_CONTENT)}});
        assert!(check_chat(&long, true).is_ok(), "characters, not bytes");
    }

    #[test]
    fn every_refusal_names_the_field() {
        assert_eq!(
            err(json!({"type": "chat", "payload": {}}), true),
            "payload.content is required"
        );
        assert_eq!(
            err(json!({"payload": {"content": "x"}}), true),
            "type is required"
        );
        assert!(err(json!({"type": "shout", "payload": {"content": "x"}}), true).contains("type"));
        assert!(
            err(json!({"type": "system", "payload": {"content": "x"}}), true)
                .contains("server only")
        );
        assert!(err(json!({"type": "chat"}), true).contains("payload is required"));
        assert!(err(json!({"type": "chat", "payload": "x"}), true).contains("payload must"));
        assert!(
            err(json!({"type": "chat", "payload": {"content": ""}}), true)
                .contains("payload.content")
        );
        assert!(err(
            json!({"type": "chat", "payload": {"content": "x".repeat(4001)}}),
            true
        )
        .contains("4001"));
        assert!(
            err(json!({"type": "chat", "payload": {"content": 5}}), true)
                .contains("payload.content must be a string")
        );
        assert!(err(
            json!({"type": "chat", "payload": {"content": "x", "to": 1}}),
            true
        )
        .contains("payload.to"));
        assert!(err(
            json!({"type": "chat", "payload": {"content": "x", "x": 1}}),
            true
        )
        .contains("payload.x"));
        assert!(err(
            json!({"type": "chat", "payload": {"content": "x"}, "extra": 1}),
            true
        )
        .contains("`extra`"));
        assert!(err(json!("text"), true).contains("object"));
    }
}
