//! The call-control functions `transfer_call` and `end_call`: their schemas, argument parsing and
//! result objects. They act on the SIP dialog, so the call task runs them (src/bridge/call.rs),
//! not [`super::call`].

use serde_json::{json, Value};

use crate::realtime::protocol::ToolDefinition;

/// `transfer_call(target)`: blind transfer by REFER to a named target of the profile.
pub const TRANSFER_CALL: &str = "transfer_call";
/// `end_call(reason)`: hang up after the goodbye has been played.
pub const END_CALL: &str = "end_call";

/// The call-control definitions for a profile whose `tools` are `allowed`: `transfer_call` only
/// when `targets` (the profile's transfer names) is not empty.
pub fn definitions(allowed: &[String], targets: &[String]) -> Vec<ToolDefinition> {
    let mut out = Vec::new();
    if allowed.iter().any(|a| a == TRANSFER_CALL) && !targets.is_empty() {
        out.push(ToolDefinition {
            name: TRANSFER_CALL.to_owned(),
            description: "Transfer the caller to a person. Tell the caller first that you are \
                transferring them. If the result says the transfer failed, apologise and offer \
                to help or take a message."
                .to_owned(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "target": {
                        "type": "string",
                        "enum": targets,
                        "description": "Who to transfer to."
                    }
                },
                "required": ["target"],
                "additionalProperties": false
            }),
        });
    }
    if allowed.iter().any(|a| a == END_CALL) {
        out.push(ToolDefinition {
            name: END_CALL.to_owned(),
            description: "End the call once the conversation is over. After calling it, say a \
                short goodbye: the line is hung up when your goodbye has been played."
                .to_owned(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "reason": {
                        "type": "string",
                        "description": "Why the call ends, e.g. \"caller said goodbye\"."
                    }
                },
                "required": [],
                "additionalProperties": false
            }),
        });
    }
    out
}

/// A string argument of a call's JSON arguments.
pub fn string_argument(arguments: &str, name: &str) -> Option<String> {
    serde_json::from_str::<Value>(arguments)
        .ok()?
        .get(name)?
        .as_str()
        .map(str::to_owned)
}

/// A structured failure result (`{"ok": false, "error": {code, message}, …}`): the one failure
/// shape of every tool, built by [`super::output::Failure`].
pub fn failure(code: &'static str, message: &str, extra: Option<(&str, Value)>) -> String {
    let mut f = super::output::Failure::new(code, message);
    if let Some((key, value)) = extra {
        f = f.with(key, value);
    }
    f.render().0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_only_when_allowed() {
        let all = vec![TRANSFER_CALL.to_owned(), END_CALL.to_owned()];
        let defs = definitions(&all, &["staff".to_owned()]);
        assert_eq!(defs.len(), 2);
        assert_eq!(
            defs[0].parameters["properties"]["target"]["enum"],
            json!(["staff"])
        );
        assert_eq!(
            definitions(&all, &[]).len(),
            1,
            "no targets, no transfer_call"
        );
        assert!(definitions(&[], &["staff".to_owned()]).is_empty());
    }

    #[test]
    fn arguments_and_failures() {
        assert_eq!(
            string_argument(r#"{"target":"staff"}"#, "target").as_deref(),
            Some("staff")
        );
        assert_eq!(string_argument("nope", "target"), None);
        let f: Value = serde_json::from_str(&failure("transfer_failed", "busy", None)).unwrap();
        assert_eq!(f["ok"], json!(false));
        assert_eq!(f["error"]["code"], json!("transfer_failed"));
    }
}
