//! The OpenRPC document of the API (`proto-docs/device-runner.openrpc.json`), embedded in the
//! binary and served by `rpc.discover`. A test checks it against the served methods.

use jsonrpsee::RpcModule;
use serde_json::Value;

pub const DOCUMENT: &str = include_str!("../../../proto-docs/device-runner.openrpc.json");

/// Adds `rpc.discover`, which returns the document.
pub fn register_discover(
    module: &mut RpcModule<()>,
) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    let document: Value = serde_json::from_str(DOCUMENT).unwrap_or(Value::Null);
    module.register_method("rpc.discover", move |_, _, _| document.clone())?;
    Ok(())
}
