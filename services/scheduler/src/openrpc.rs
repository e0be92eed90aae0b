//! The OpenRPC document of the API (`proto-docs/scheduler.openrpc.json`), embedded in the
//! binary. It is served by `rpc.discover` ([`service_kit::serve::rpc_module`]), and the AutoGPT routes read each method's parameter
//! list from it to report missing arguments the way FastAPI does. A test checks that it lists
//! exactly the methods the server serves.

use std::sync::OnceLock;

use serde_json::Value;

pub const DOCUMENT: &str = include_str!("../../../proto-docs/scheduler.openrpc.json");

/// A method's parameters as the document lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodSpec {
    pub name: String,
    pub params: Vec<ParamSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub required: bool,
}

fn document() -> &'static Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    PARSED.get_or_init(|| serde_json::from_str(DOCUMENT).unwrap_or(Value::Null))
}

/// Every method in the document.
pub fn methods() -> &'static [MethodSpec] {
    static METHODS: OnceLock<Vec<MethodSpec>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let listed = document()
            .get("methods")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        listed
            .iter()
            .map(|method| MethodSpec {
                name: method["name"].as_str().unwrap_or_default().to_string(),
                params: method["params"]
                    .as_array()
                    .map(|params| {
                        params
                            .iter()
                            .map(|p| ParamSpec {
                                name: p["name"].as_str().unwrap_or_default().to_string(),
                                required: p["required"].as_bool().unwrap_or(false),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    })
}

pub fn method(name: &str) -> Option<&'static MethodSpec> {
    methods().iter().find(|m| m.name == name)
}
