//! `unsubscribe_logs` by name. jsonrpsee reads an unsubscribe call's subscription id by
//! position only, so `{"subscription": id}`, as the API documents it, would answer `false` and
//! leave the subscription running. This RPC middleware turns that one named form into the
//! positional one before jsonrpsee sees it, over HTTP and WebSocket alike.

use std::borrow::Cow;

use jsonrpsee::core::middleware::{Batch, BatchEntry, Notification, RpcServiceT};
use jsonrpsee::types::Request;
use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Map, Value};

/// The unsubscribe method whose named form is accepted.
const UNSUBSCRIBE: &str = "unsubscribe_logs";

/// The layer that adds [`NamedUnsubscribe`] to the RPC service.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamedUnsubscribeLayer;

impl<S> tower::Layer<S> for NamedUnsubscribeLayer {
    type Service = NamedUnsubscribe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NamedUnsubscribe(inner)
    }
}

#[derive(Debug, Clone)]
pub struct NamedUnsubscribe<S>(S);

impl<S> RpcServiceT for NamedUnsubscribe<S>
where
    S: RpcServiceT + Send + Sync + Clone + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(
        &self,
        mut request: Request<'a>,
    ) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        by_position(&mut request);
        self.0.call(request)
    }

    fn batch<'a>(
        &self,
        mut batch: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        for entry in batch.iter_mut() {
            if let Ok(BatchEntry::Call(request)) = entry {
                by_position(request);
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
