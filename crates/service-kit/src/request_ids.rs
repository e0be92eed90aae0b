//! JSON-RPC request ids that jsonrpsee cannot hold, answered in front of it.
//!
//! jsonrpsee keeps an id as a string, `null` or an unsigned 64-bit integer. A request whose id
//! is another number (negative, fractional, written with an exponent, beyond 64 bits) is valid
//! JSON-RPC, but jsonrpsee would answer it with the body `null` and never run it; so would a
//! request whose id is of a type JSON-RPC forbids (an object, an array, a boolean). Here:
//!
//! - an id jsonrpsee cannot hold is swapped for a unique string before the request goes on,
//!   and the original text of the id, exactly as the caller wrote it, is put back into the
//!   answer;
//! - a request with a forbidden id is answered `-32600` with id `null`, naming the problem (in
//!   a batch, that entry alone).

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// JSON-RPC's code for an invalid request object.
const INVALID_REQUEST: i32 = -32600;

/// What to do with a request body.
#[derive(Debug, PartialEq)]
pub enum Prepared {
    /// Pass it on as it is.
    Unchanged,
    /// Pass `body` on instead, then [`restore`] the ids in the answer.
    Rewritten { body: Vec<u8>, ids: Vec<Swap> },
    /// Answer this without running anything.
    Refused(Value),
}

/// A stand-in id and the text it replaces in the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Swap {
    /// The stand-in as it appears in the answer, quotes included.
    stand_in: String,
    /// What goes back in its place: the caller's id, or `null` for a forbidden one.
    original: String,
}

/// Looks at a request body (one request or a batch) and says how to pass it on.
pub fn prepare(body: &[u8]) -> Prepared {
    let Ok(raw) = serde_json::from_slice::<&RawValue>(body) else {
        // Not JSON: jsonrpsee answers the parse error itself.
        return Prepared::Unchanged;
    };
    let mut ids = Vec::new();
    let text = raw.get().trim_start();
    // Most requests need no stand-in: the nonce is drawn only for one that does.
    let nonce = std::cell::OnceCell::new();
    let nonce = || -> &str { nonce.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()) };
    let rewritten = if text.starts_with('[') {
        let Ok(entries) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
            return Prepared::Unchanged;
        };
        let mut changed = false;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            match check(entry) {
                Check::Fine => out.push(entry.get().to_string()),
                Check::Unrepresentable(fields, original) => {
                    changed = true;
                    out.push(swap_id(fields, original, nonce(), &mut ids));
                }
                Check::Forbidden(_) => {
                    // jsonrpsee answers an entry without a method -32600; its id comes back
                    // as null.
                    changed = true;
                    let stand_in = stand_in(nonce(), ids.len());
                    ids.push(Swap {
                        stand_in: format!("\"{stand_in}\""),
                        original: "null".into(),
                    });
                    out.push(json!({"jsonrpc": "2.0", "id": stand_in}).to_string());
                }
            }
        }
        if !changed {
            return Prepared::Unchanged;
        }
        format!("[{}]", out.join(","))
    } else {
        match check(raw) {
            Check::Fine => return Prepared::Unchanged,
            Check::Unrepresentable(fields, original) => {
                swap_id(fields, original, nonce(), &mut ids)
            }
            Check::Forbidden(kind) => return Prepared::Refused(refusal(kind)),
        }
    };
    Prepared::Rewritten {
        body: rewritten.into_bytes(),
        ids,
    }
}

/// Puts the callers' ids back into an answer to a [`Prepared::Rewritten`] body.
pub fn restore(answer: &[u8], ids: &[Swap]) -> Vec<u8> {
    let mut text = String::from_utf8_lossy(answer).into_owned();
    for swap in ids {
        text = text.replacen(&swap.stand_in, &swap.original, 1);
    }
    text.into_bytes()
}

enum Check<'a> {
    Fine,
    /// A number jsonrpsee cannot hold: the request's fields and the id's text.
    Unrepresentable(Map<String, Value>, &'a str),
    /// An id of a type JSON-RPC does not allow, named.
    Forbidden(&'static str),
}

fn check(request: &RawValue) -> Check<'_> {
    #[derive(serde::Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow, default)]
        id: Option<&'a RawValue>,
    }
    let Ok(IdOnly { id: Some(id) }) = serde_json::from_str::<IdOnly<'_>>(request.get()) else {
        // Not an object, no id (a notification), or a null id: jsonrpsee handles these.
        return Check::Fine;
    };
    let text = id.get().trim();
    match text.as_bytes().first() {
        Some(b'"') | Some(b'n') => Check::Fine,
        Some(b'-' | b'0'..=b'9') if text.parse::<u64>().is_ok() => Check::Fine,
        Some(b'-' | b'0'..=b'9') => match serde_json::from_str(request.get()) {
            Ok(fields) => Check::Unrepresentable(fields, text),
            Err(_) => Check::Fine,
        },
        Some(b'{') => Check::Forbidden("an object"),
        Some(b'[') => Check::Forbidden("an array"),
        _ => Check::Forbidden("a boolean"),
    }
}

fn stand_in(nonce: &str, index: usize) -> String {
    format!("jsonrpc-id-{nonce}-{index}")
}

/// The request with its id replaced by a stand-in string, recorded in `ids`.
fn swap_id(
    mut fields: Map<String, Value>,
    original: &str,
    nonce: &str,
    ids: &mut Vec<Swap>,
) -> String {
    let stand_in = stand_in(nonce, ids.len());
    ids.push(Swap {
        stand_in: format!("\"{stand_in}\""),
        original: original.to_string(),
    });
    fields.insert("id".into(), Value::String(stand_in));
    Value::Object(fields).to_string()
}

fn refusal(kind: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": INVALID_REQUEST,
            "message": format!(
                "Invalid request: the id must be a string, a number or null, not {kind}"
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(body: &str) -> (String, Vec<Swap>) {
        match prepare(body.as_bytes()) {
            Prepared::Rewritten { body, ids } => (String::from_utf8(body).unwrap(), ids),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn ids_jsonrpsee_holds_pass_unchanged() {
        for body in [
            r#"{"jsonrpc":"2.0","id":7,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":"x","method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"m"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"m"}]"#,
            "not json",
            "[1, 2]",
        ] {
            assert_eq!(prepare(body.as_bytes()), Prepared::Unchanged, "{body}");
        }
    }

    #[test]
    fn other_numbers_are_swapped_and_put_back_as_written() {
        for id in ["-1", "1.5", "1e3", "18446744073709551616", "-0"] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"m","params":[1]}}"#);
            let (sent, ids) = rewritten(&body);
            let sent: Value = serde_json::from_str(&sent).unwrap();
            let stand_in = sent["id"].as_str().unwrap().to_string();
            assert_eq!(sent["params"], json!([1]));
            let answer = format!(r#"{{"jsonrpc":"2.0","id":"{stand_in}","result":"OK"}}"#);
            let restored = String::from_utf8(restore(answer.as_bytes(), &ids)).unwrap();
            assert_eq!(
                restored,
                format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"OK"}}"#)
            );
        }
    }

    #[test]
    fn forbidden_ids_are_refused_with_a_null_id() {
        for (id, kind) in [
            ("{}", "an object"),
            ("[]", "an array"),
            ("true", "a boolean"),
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"m"}}"#);
            let Prepared::Refused(answer) = prepare(body.as_bytes()) else {
                panic!("{body}");
            };
            assert_eq!(answer["id"], Value::Null);
            assert_eq!(answer["error"]["code"], INVALID_REQUEST);
            assert!(answer["error"]["message"].as_str().unwrap().contains(kind));
        }
    }

    #[test]
    fn in_a_batch_each_entry_is_handled_alone() {
        let body = r#"[{"jsonrpc":"2.0","id":-1,"method":"m"},{"jsonrpc":"2.0","id":2,"method":"m"},{"jsonrpc":"2.0","id":false,"method":"m"}]"#;
        let (sent, ids) = rewritten(body);
        let sent: Vec<Value> = serde_json::from_str(&sent).unwrap();
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[1]["id"], 2);
        assert!(
            sent[2].get("method").is_none(),
            "the forbidden entry runs nothing"
        );
        let answer = format!(
            r#"[{{"id":{}}},{{"id":2}},{{"id":{}}}]"#,
            sent[0]["id"], sent[2]["id"]
        );
        let restored: Value = serde_json::from_slice(&restore(answer.as_bytes(), &ids)).unwrap();
        assert_eq!(restored, json!([{"id": -1}, {"id": 2}, {"id": null}]));
    }
}
