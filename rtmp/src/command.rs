//! AMF0 command and data message parsing (RTMP specification, section 7).

use flv::amf0::{self, Value};

use crate::chunk::{msg_type, RawMessage};
use crate::error::{HexDump, SessionError};

/// A decoded command message: name, transaction id, command object, arguments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Command {
    pub name: String,
    pub transaction_id: f64,
    pub object: Value,
    pub args: Vec<Value>,
}

pub(crate) fn malformed(msg: &RawMessage, reason: String) -> SessionError {
    SessionError::MalformedCommand {
        offset: msg.offset,
        csid: msg.csid,
        type_id: msg.header.type_id,
        stream_id: msg.header.stream_id,
        reason,
        dump: HexDump::new(&msg.payload),
    }
}

/// The AMF0 body of a command or data message (AMF3 variants start with a 0 byte
/// that selects AMF0 for the rest).
pub(crate) fn amf0_body(msg: &RawMessage) -> &[u8] {
    match msg.header.type_id {
        msg_type::COMMAND_AMF3 | msg_type::DATA_AMF3 if msg.payload.first() == Some(&0) => {
            &msg.payload[1..]
        }
        _ => &msg.payload,
    }
}

pub(crate) fn parse_command(msg: &RawMessage) -> Result<Command, SessionError> {
    let values = amf0::decode_all(amf0_body(msg))
        .map_err(|e| malformed(msg, format!("command does not decode as AMF0: {e}")))?;
    let mut it = values.into_iter();
    let name = match it.next() {
        Some(Value::String(s)) => s,
        other => {
            return Err(malformed(
                msg,
                format!("command name must be a string, found {other:?}"),
            ))
        }
    };
    let transaction_id = match it.next() {
        Some(Value::Number(n)) => n,
        None => 0.0,
        Some(other) => {
            return Err(malformed(
                msg,
                format!("transaction id of {name:?} must be a number, found {other:?}"),
            ))
        }
    };
    let object = it.next().unwrap_or(Value::Null);
    Ok(Command {
        name,
        transaction_id,
        object,
        args: it.collect(),
    })
}

/// `level`, `code` and `description` of an onStatus / _result / _error info object.
pub(crate) fn status_fields(info: Option<&Value>) -> (String, String, String) {
    let field = |k: &str| {
        info.and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (field("level"), field("code"), field("description"))
}

/// Builds an info object as servers send it.
pub(crate) fn status_object(level: &str, code: &str, description: &str) -> Value {
    Value::Object(vec![
        ("level".into(), level.into()),
        ("code".into(), code.into()),
        ("description".into(), description.into()),
    ])
}

/// Whether an onStatus code means the publish (or connect) was refused.
pub(crate) fn is_refusal(level: &str, code: &str) -> bool {
    level == "error"
        || ["BadName", "Rejected", "Failed", "Denied"]
            .iter()
            .any(|w| code.contains(w))
}
