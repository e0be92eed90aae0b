//! How error messages name what a caller sent.

use serde_json::Value;

/// A JSON value's kind, as error messages name it.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Refuses a value that is not a JSON object, naming the field and what it got.
pub fn check_object(field: &str, value: &Value) -> Result<(), String> {
    if value.is_object() {
        return Ok(());
    }
    Err(format!(
        "{field} must be a JSON object, got {}",
        json_kind(value)
    ))
}
