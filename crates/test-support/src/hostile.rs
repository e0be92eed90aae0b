//! What a careless or hostile caller sends a JSON-RPC service, derived from its OpenRPC
//! document: for every method, each parameter in turn given the wrong type, `null`, extreme
//! numbers, a huge string or deep nesting while the others stay valid; unknown extra
//! parameters; positional arrays of the wrong length. [`send`] delivers each request and
//! reports every answer that is not a success or a client error within [`ANSWER_WITHIN`], and
//! every error whose code the method's document does not list.

use std::time::Duration;

use serde_json::{Map, Value, json};

/// How long one answer may take.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// JSON-RPC error codes that mean "the server failed", never "the caller erred".
const SERVER_FAILURES: [i64; 2] = [-32603, 5000];

/// One request to send: a method and its params as JSON text (kept as text so that numbers
/// beyond 64 bits reach the server exactly as written).
#[derive(Debug, Clone)]
pub struct Probe {
    pub method: String,
    /// What was done to the params, for the report.
    pub what: String,
    pub params: String,
    /// Whether the params are an object (so the request can also go to a plain HTTP route).
    pub named: bool,
    /// The error codes the method's document lists (its `errors`, references resolved).
    pub documented: Vec<i64>,
}

/// The codes JSON-RPC itself reserves (-32768 to -32000: parse error, invalid request, method
/// not found, ...): answered by the protocol layer for any method, so no document lists them.
fn reserved(code: i64) -> bool {
    (-32768..=-32000).contains(&code)
}

/// The codes of the errors `method` lists in `document`, `$ref`s into
/// `components/errors` resolved.
pub fn documented_codes(document: &Value, method: &Value) -> Vec<i64> {
    method["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|error| match error["$ref"].as_str() {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap_or_default();
                document["components"]["errors"][name]["code"].as_i64()
            }
            None => error["code"].as_i64(),
        })
        .collect()
}

/// Values outside what a parameter's schema may allow, as JSON text, with a name.
fn hostile_values() -> Vec<(&'static str, String)> {
    let deep_array = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100));
    let too_deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    vec![
        ("null", "null".into()),
        ("true", "true".into()),
        ("a string", "\"x\"".into()),
        ("an empty string", "\"\"".into()),
        ("an array", "[1, \"x\"]".into()),
        ("an object", "{\"x\": 1}".into()),
        ("-1", "-1".into()),
        ("0", "0".into()),
        ("1.5", "1.5".into()),
        ("2^63-1", "9223372036854775807".into()),
        ("2^63", "9223372036854775808".into()),
        ("2^64", "18446744073709551616".into()),
        ("-2^63-1", "-9223372036854775809".into()),
        ("1e308", "1e308".into()),
        ("-1e308", "-1e308".into()),
        ("a huge string", format!("\"{}\"", "x".repeat(200_000))),
        ("a 100-deep array", deep_array),
        ("a 100-deep object", deep_object),
        ("a 5000-deep array", too_deep),
    ]
}

/// The requests for every method of `document`. `valid` gives a value that the service
/// accepts for a parameter (by method and name), used for the parameters not under attack;
/// where it gives none, a value of the parameter's schema type is made up.
pub fn probes(document: &Value, valid: impl Fn(&str, &str) -> Option<Value>) -> Vec<Probe> {
    let mut out = Vec::new();
    for method in document["methods"].as_array().into_iter().flatten() {
        let name = method["name"].as_str().unwrap_or_default().to_string();
        let params: Vec<(String, Value)> = method["params"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|param| {
                let key = param["name"].as_str().unwrap_or_default().to_string();
                let value = valid(&name, &key).unwrap_or_else(|| of_schema(&param["schema"]));
                (key, value)
            })
            .collect();
        let base: Map<String, Value> = params.iter().cloned().collect();
        let documented = documented_codes(document, method);
        let probe = |what: String, params: String, named: bool| Probe {
            method: name.clone(),
            what,
            params,
            named,
            documented: documented.clone(),
        };
        for (key, _) in &params {
            for (label, raw) in hostile_values() {
                out.push(probe(
                    format!("{key} = {label}"),
                    with_raw(&base, key, &raw),
                    true,
                ));
            }
        }
        let mut extra = base.clone();
        extra.insert("unexpected_param".into(), json!({"x": [1, 2, 3]}));
        out.push(probe(
            "an unknown extra param".into(),
            Value::Object(extra).to_string(),
            true,
        ));
        out.push(probe("no params at all".into(), "{}".into(), true));
        let values: Vec<Value> = params.iter().map(|(_, v)| v.clone()).collect();
        let mut longer = values.clone();
        longer.push(json!("one too many"));
        out.push(probe(
            "one positional param too many".into(),
            Value::Array(longer).to_string(),
            false,
        ));
        if !values.is_empty() {
            let shorter = values[..values.len() - 1].to_vec();
            out.push(probe(
                "one positional param too few".into(),
                Value::Array(shorter).to_string(),
                false,
            ));
            out.push(probe(
                "an empty positional array".into(),
                "[]".into(),
                false,
            ));
        }
    }
    out
}

/// `base` with `key` set to the JSON text `raw`.
fn with_raw(base: &Map<String, Value>, key: &str, raw: &str) -> String {
    const MARK: &str = "\u{1}hostile\u{1}";
    let mut params = base.clone();
    params.insert(key.to_string(), Value::String(MARK.into()));
    let text = Value::Object(params).to_string();
    text.replacen(&Value::String(MARK.into()).to_string(), raw, 1)
}

/// A value of a schema's type, for a parameter `valid` knows nothing about.
fn of_schema(schema: &Value) -> Value {
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds.first().cloned().unwrap_or(Value::Null),
        other => other.clone(),
    };
    match kind.as_str() {
        Some("string") => json!("x"),
        Some("integer") | Some("number") if schema["minimum"].is_number() => {
            schema["minimum"].clone()
        }
        Some("integer") | Some("number") => json!(1),
        Some("boolean") => json!(true),
        Some("array") => json!([]),
        Some("object") => json!({}),
        _ => Value::Null,
    }
}

/// An answer that was not a success or a client error.
#[derive(Debug)]
pub struct Failure {
    pub probe: String,
    pub answer: String,
}

/// Sends every probe (see [`send`]) and panics with a report of the failures, if any.
pub async fn assert_all_answered(url: &str, probes: &[Probe], routes: bool) {
    let failures = send(url, probes, routes).await;
    assert!(
        failures.is_empty(),
        "{} of {} probes failed:\n{}",
        failures.len(),
        probes.len(),
        report(&failures)
    );
}

/// The failures, one line each (at most 60), for an assertion message.
fn report(failures: &[Failure]) -> String {
    let mut lines: Vec<String> = failures
        .iter()
        .take(60)
        .map(|f| {
            format!(
                "- {}: {}",
                f.probe,
                f.answer.chars().take(160).collect::<String>()
            )
        })
        .collect();
    if failures.len() > 60 {
        lines.push(format!("- and {} more", failures.len() - 60));
    }
    lines.join("\n")
}

/// Sends every probe as a JSON-RPC request to `url` (and, when `routes` is set, each named
/// one also to `POST {url}/{method}` as a plain JSON body), and returns what failed: no
/// answer within [`ANSWER_WITHIN`], an HTTP 5xx, a `null` or non-JSON body, a JSON-RPC
/// error that blames the server, or one with a code the method's document does not list.
pub async fn send(url: &str, probes: &[Probe], routes: bool) -> Vec<Failure> {
    let http = reqwest::Client::builder()
        .timeout(ANSWER_WITHIN)
        .build()
        .expect("an HTTP client");
    let mut failures = Vec::new();
    for (id, probe) in probes.iter().enumerate() {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":{},"params":{}}}"#,
            Value::String(probe.method.clone()),
            probe.params
        );
        let label = format!("{} with {}", probe.method, probe.what);
        if let Some(problem) = deliver(&http, url, body, Some(&probe.documented)).await {
            failures.push(Failure {
                probe: label.clone(),
                answer: problem,
            });
        }
        if routes && probe.named {
            let route = format!("{}/{}", url.trim_end_matches('/'), probe.method);
            if let Some(problem) = deliver(&http, &route, probe.params.clone(), None).await {
                failures.push(Failure {
                    probe: format!("POST /{}", label),
                    answer: problem,
                });
            }
        }
    }
    failures
}

/// Sends one body; says what is wrong with the answer, if anything. `documented` holds the
/// codes a JSON-RPC answer may carry; `None` for a plain HTTP route.
async fn deliver(
    http: &reqwest::Client,
    url: &str,
    body: String,
    documented: Option<&[i64]>,
) -> Option<String> {
    let response = match http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => return Some(format!("no answer: {error}")),
    };
    let status = response.status();
    let text = match response.text().await {
        Ok(text) => text,
        Err(error) => return Some(format!("HTTP {status}, unreadable body: {error}")),
    };
    let excerpt: String = text.chars().take(300).collect();
    if status.is_server_error() {
        return Some(format!("HTTP {status}: {excerpt}"));
    }
    let documented = documented?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Null) | Err(_) => {
            Some(format!("HTTP {status}, not a JSON-RPC answer: {excerpt}"))
        }
        Ok(answer) => match answer["error"]["code"].as_i64() {
            Some(code) if SERVER_FAILURES.contains(&code) => {
                Some(format!("error {code} blames the server: {excerpt}"))
            }
            Some(code) if !reserved(code) && !documented.contains(&code) => Some(format!(
                "error {code} is not among the method's documented errors {documented:?}: \
                 {excerpt}"
            )),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_param_is_attacked_while_the_others_stay_valid() {
        let document = json!({"methods": [{
            "name": "m",
            "params": [
                {"name": "a", "required": true, "schema": {"type": "string"}},
                {"name": "b", "schema": {"type": "integer", "minimum": 3}}
            ]
        }]});
        let probes = probes(&document, |_, name| (name == "a").then(|| json!("valid")));
        let on_b: Vec<_> = probes
            .iter()
            .filter(|p| p.what.starts_with("b = "))
            .collect();
        assert_eq!(on_b.len(), hostile_values().len());
        let big = on_b.iter().find(|p| p.what == "b = 2^64").unwrap();
        assert_eq!(big.params, r#"{"a":"valid","b":18446744073709551616}"#);
        let extra = probes
            .iter()
            .find(|p| p.what == "an unknown extra param")
            .unwrap();
        assert!(extra.params.contains(r#""b":3"#), "{}", extra.params);
        let longer = probes.iter().find(|p| p.what.contains("too many")).unwrap();
        assert_eq!(longer.params, r#"["valid",3,"one too many"]"#);
        assert!(!longer.named);
    }

    #[test]
    fn documented_codes_resolve_references_and_take_inline_errors() {
        let document = json!({
            "components": {"errors": {"ValueError": {"code": 4000, "message": "ValueError"}}},
            "methods": [{
                "name": "m",
                "params": [],
                "errors": [
                    {"$ref": "#/components/errors/ValueError"},
                    {"code": 4040, "message": "inline"}
                ]
            }]
        });
        let method = &document["methods"][0];
        assert_eq!(documented_codes(&document, method), [4000, 4040]);
        let probes = probes(&document, |_, _| None);
        assert!(probes.iter().all(|p| p.documented == [4000, 4040]));
        assert!(reserved(-32602) && reserved(-32700) && !reserved(4000) && !reserved(-1));
    }
}
