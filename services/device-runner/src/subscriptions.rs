//! Subscriptions at the JSON-RPC layer, in an RPC middleware in front of jsonrpsee's own:
//!
//! - `unsubscribe_logs` by name: jsonrpsee reads an unsubscribe call's subscription id by
//!   position only, so `{"subscription": id}`, as the API documents it, would answer `false`
//!   and leave the subscription running; the named form is turned into the positional one.
//! - Subscription methods over plain HTTP, where they cannot work: jsonrpsee would answer
//!   "Internal error"; they are refused with -32601 saying to use WebSocket.

use std::borrow::Cow;

use futures::future::Either;
use jsonrpsee::MethodResponse;
use jsonrpsee::core::middleware::{Batch, BatchEntry, BatchEntryErr, Notification, RpcServiceT};
use jsonrpsee::types::{ErrorObject, Request};
use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Map, Value};

/// The unsubscribe method whose named form is accepted.
const UNSUBSCRIBE: &str = "unsubscribe_logs";
/// The methods served over WebSocket only.
const WEBSOCKET_ONLY: [&str; 2] = ["subscribe_logs", UNSUBSCRIBE];
/// JSON-RPC's "method not found or not available".
const NOT_AVAILABLE: i32 = -32601;

/// Marks a call that came over plain HTTP (set by the HTTP handler on the request).
#[derive(Debug, Clone, Copy)]
pub struct OverHttp;

/// The layer that adds [`SubscriptionCalls`] to the RPC service.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubscriptionCallsLayer;

impl<S> tower::Layer<S> for SubscriptionCallsLayer {
    type Service = SubscriptionCalls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SubscriptionCalls(inner)
    }
}

#[derive(Debug, Clone)]
pub struct SubscriptionCalls<S>(S);

impl<S> RpcServiceT for SubscriptionCalls<S>
where
    S: RpcServiceT<MethodResponse = MethodResponse> + Send + Sync + Clone + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(
        &self,
        mut request: Request<'a>,
    ) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        if let Some(error) = websocket_only(&request) {
            return Either::Left(std::future::ready(MethodResponse::error(request.id, error)));
        }
        by_position(&mut request);
        Either::Right(self.0.call(request))
    }

    fn batch<'a>(
        &self,
        mut batch: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        for entry in batch.iter_mut() {
            let Ok(BatchEntry::Call(request)) = entry else {
                continue;
            };
            match websocket_only(request) {
                Some(error) => *entry = Err(BatchEntryErr::new(request.id.clone(), error)),
                None => by_position(request),
            }
        }
        self.0.batch(batch)
    }

    fn notification<'a>(
        &self,
        notification: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.0.notification(notification)
    }
}

/// The refusal of a subscription method called over plain HTTP.
fn websocket_only(request: &Request<'_>) -> Option<ErrorObject<'static>> {
    let over_http = request.extensions().get::<OverHttp>().is_some();
    (over_http && WEBSOCKET_ONLY.contains(&request.method.as_ref())).then(|| {
        let message = format!(
            "{} is served over WebSocket only: connect to ws://<host>:<port>/",
            request.method
        );
        ErrorObject::owned(NOT_AVAILABLE, message, None::<()>)
    })
}

/// `{"subscription": id}` becomes `[id]` for the unsubscribe method; anything else is left.
fn by_position(request: &mut Request<'_>) {
    if request.method != UNSUBSCRIBE {
        return;
    }
    let Some(params) = &request.params else {
        return;
    };
    let Ok(mut named) = serde_json::from_str::<Map<String, Value>>(params.get()) else {
        return;
    };
    let Some(id) = named.remove("subscription").filter(|_| named.is_empty()) else {
        return;
    };
    if let Ok(positional) = to_raw_value(&[id]) {
        request.params = Some(Cow::<RawValue>::Owned(positional));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonrpsee::types::Id;

    fn request(method: &str, params: &str) -> Request<'static> {
        let params = RawValue::from_string(params.to_string()).unwrap();
        let mut request = Request::borrowed("", None, Id::Number(1));
        request.method = Cow::Owned(method.to_string());
        request.params = Some(Cow::Owned(params));
        request
    }

    #[test]
    fn the_named_form_becomes_positional() {
        let mut named = request(UNSUBSCRIBE, r#"{"subscription": "abc"}"#);
        by_position(&mut named);
        assert_eq!(named.params.unwrap().get(), r#"["abc"]"#);
        for (method, params) in [
            (UNSUBSCRIBE, r#"["abc"]"#),
            (UNSUBSCRIBE, r#"{"subscription": "abc", "other": 1}"#),
            ("get_logs", r#"{"subscription": "abc"}"#),
        ] {
            let mut left = request(method, params);
            by_position(&mut left);
            assert_eq!(left.params.unwrap().get(), params, "{method} {params}");
        }
    }
}
