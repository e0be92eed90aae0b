//! The RPC middleware in front of jsonrpsee's own, applying a service's [`CallRules`] to every
//! call, batched or not:
//!
//! - per-method auth: a method not open to anyone needs the token, an admin method the admin
//!   token (the caller was recorded by [`crate::auth::authenticate`]);
//! - subscription methods over plain HTTP, where they cannot work: jsonrpsee would answer
//!   "Internal error"; they are refused with -32601 saying to use WebSocket;
//! - unsubscribe by name: jsonrpsee reads an unsubscribe call's subscription id by position
//!   only, so `{"subscription": id}` would answer `false` and leave the subscription running;
//!   the named form is turned into the positional one; and an unsubscribe that jsonrpsee
//!   answers `false` for a subscription still being accepted ([`Accepting`]) ends it once
//!   accepted and answers `true`;
//! - parameters that do not parse: for the methods a service lists, jsonrpsee's -32602
//!   "Invalid params" becomes the service's own bad-input error, with serde's message naming
//!   the field, so callers see one kind of error for every bad value.

use std::borrow::Cow;
use std::sync::Arc;

use futures::future::Either;
use jsonrpsee::MethodResponse;
use jsonrpsee::core::middleware::{Batch, BatchEntry, BatchEntryErr, Notification, RpcServiceT};
use jsonrpsee::core::server::BatchResponseBuilder;
use jsonrpsee::types::error::INVALID_PARAMS_CODE;
use jsonrpsee::types::{ErrorObject, Id, Request};
use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Map, Value, json};

use crate::auth::{Auth, Caller, UNAUTHORIZED, UNAUTHORIZED_TYPE};
use crate::subscriptions::Accepting;

/// JSON-RPC's "method not found or not available".
const NOT_AVAILABLE: i32 = -32601;

/// What a service asks of every call.
#[derive(Debug, Clone, Default)]
pub struct CallRules {
    /// Methods anyone may call, without a token.
    pub open_methods: Vec<&'static str>,
    /// Methods that need the admin token.
    pub admin_methods: Vec<&'static str>,
    /// Methods served over WebSocket only.
    pub websocket_only: Vec<&'static str>,
    /// Unsubscribe methods: they also take `{"subscription": id}`, and end a subscription
    /// still being accepted through `accepting`.
    pub named_unsubscribe: Vec<&'static str>,
    /// The subscriptions being accepted (the service accepts them through it).
    pub accepting: Accepting,
    /// Methods whose unparsable parameters answer with the service's bad-input error.
    pub param_errors: Option<ParamErrors>,
}

/// The error that replaces "Invalid params" for some methods.
#[derive(Debug, Clone, Default)]
pub struct ParamErrors {
    pub methods: Vec<&'static str>,
    pub code: i32,
    /// `error.data.type`, as the service's other errors carry it (`ValueError`).
    pub kind: &'static str,
}

impl ParamErrors {
    /// The response with an "Invalid params" error replaced, anything else as it is.
    fn rewrite(&self, response: MethodResponse, id: Id<'static>) -> MethodResponse {
        if response.as_error_code() != Some(INVALID_PARAMS_CODE) {
            return response;
        }
        let Ok(body) = serde_json::from_str::<Value>(response.as_json().get()) else {
            return response;
        };
        let error = &body["error"];
        let message = error["data"]
            .as_str()
            .or_else(|| error["message"].as_str())
            .unwrap_or("invalid params")
            .to_string();
        let data = json!({"type": self.kind});
        let extensions = response.extensions().clone();
        MethodResponse::error(id, ErrorObject::owned(self.code, message, Some(data)))
            .with_extensions(extensions)
    }
}

impl CallRules {
    /// Whether anonymous callers reach some method, so the HTTP layer must let `/` through.
    pub fn per_method(&self) -> bool {
        !self.open_methods.is_empty()
    }
}

/// Marks a call that came over plain HTTP (set by the HTTP handler on the request).
#[derive(Debug, Clone, Copy)]
pub struct OverHttp;

/// The layer that adds [`Calls`] to the RPC service.
#[derive(Debug, Clone)]
pub struct CallsLayer {
    rules: Arc<CallRules>,
    auth: Arc<Auth>,
}

impl CallsLayer {
    pub fn new(rules: CallRules, auth: Auth) -> Self {
        CallsLayer {
            rules: Arc::new(rules),
            auth: Arc::new(auth),
        }
    }
}

impl<S> tower::Layer<S> for CallsLayer {
    type Service = Calls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Calls {
            inner,
            rules: self.rules.clone(),
            auth: self.auth.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Calls<S> {
    inner: S,
    rules: Arc<CallRules>,
    auth: Arc<Auth>,
}

impl<S> RpcServiceT for Calls<S>
where
    S: RpcServiceT<MethodResponse = MethodResponse, BatchResponse = MethodResponse>
        + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(
        &self,
        mut request: Request<'a>,
    ) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        // The request's span, when traces are on, names the method it called.
        tracing::Span::current().record("rpc.method", request.method_name());
        if let Some(error) = self.refusal(&request) {
            return Either::Left(std::future::ready(MethodResponse::error(request.id, error)));
        }
        self.by_position(&mut request);
        if self.is_unsubscribe(&request) {
            let accepting = self.rules.accepting.clone();
            let id = request.id.clone().into_owned();
            let subscription = first_param(&request);
            let response = self.inner.call(request);
            return Either::Right(Either::Right(Either::Left(async move {
                let answer = response.await;
                let unfound = answer.as_json().get().contains(r#""result":false"#);
                match subscription.filter(|sub| unfound && accepting.cancel(sub)) {
                    Some(_) => MethodResponse::response(
                        id,
                        jsonrpsee::ResponsePayload::success(true),
                        usize::MAX,
                    )
                    .with_extensions(answer.extensions().clone()),
                    None => answer,
                }
            })));
        }
        let rewrite = self
            .rules
            .param_errors
            .as_ref()
            .is_some_and(|errors| errors.methods.contains(&request.method.as_ref()));
        if !rewrite {
            return Either::Right(Either::Left(self.inner.call(request)));
        }
        let rules = self.rules.clone();
        let id = request.id.clone().into_owned();
        let response = self.inner.call(request);
        Either::Right(Either::Right(Either::Right(async move {
            let answer = response.await;
            match &rules.param_errors {
                Some(errors) => errors.rewrite(answer, id),
                None => answer,
            }
        })))
    }

    fn batch<'a>(
        &self,
        mut batch: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        for entry in batch.iter_mut() {
            let Ok(BatchEntry::Call(request)) = entry else {
                continue;
            };
            match self.refusal(request) {
                Some(error) => *entry = Err(BatchEntryErr::new(request.id.clone(), error)),
                None => self.by_position(request),
            }
        }
        if self.rules.param_errors.is_none() {
            return Either::Left(self.inner.batch(batch));
        }
        let rules = self.rules.clone();
        // The calls of a batch go one by one through the inner service, as its own batch
        // handling does, so each answer can be rewritten like a single call's.
        let inner = self.inner.clone();
        Either::Right(async move {
            let mut answers = BatchResponseBuilder::new_with_limit(usize::MAX);
            let mut notified = false;
            let errors = rules.param_errors.as_ref();
            for entry in batch.into_iter() {
                let answer = match entry {
                    Ok(BatchEntry::Call(request)) => {
                        let id = request.id.clone().into_owned();
                        let rewrite = errors
                            .filter(|errors| errors.methods.contains(&request.method.as_ref()));
                        let answer = inner.call(request).await;
                        match rewrite {
                            Some(errors) => errors.rewrite(answer, id),
                            None => answer,
                        }
                    }
                    Ok(BatchEntry::Notification(notification)) => {
                        notified = true;
                        inner.notification(notification).await;
                        continue;
                    }
                    Err(error) => {
                        let (error, id) = error.into_parts();
                        MethodResponse::error(id, error)
                    }
                };
                if let Err(too_big) = answers.append(answer) {
                    return too_big;
                }
            }
            if answers.is_empty() && notified {
                MethodResponse::notification()
            } else {
                MethodResponse::from_batch(answers.finish())
            }
        })
    }

    fn notification<'a>(
        &self,
        notification: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(notification)
    }
}

impl<S> Calls<S> {
    /// Why a call may not run: a missing token, or a subscription over plain HTTP.
    fn refusal(&self, request: &Request<'_>) -> Option<ErrorObject<'static>> {
        let method = request.method.as_ref();
        let extensions = request.extensions();
        let caller = extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous);
        let denied = if self.rules.open_methods.contains(&method) {
            None
        } else if let Err(message) = self.auth.check_any(&caller) {
            Some(message)
        } else if self.rules.admin_methods.contains(&method) {
            self.auth.check_admin(method, extensions).err()
        } else {
            None
        };
        if let Some(message) = denied {
            let data = json!({"type": UNAUTHORIZED_TYPE});
            return Some(ErrorObject::owned(UNAUTHORIZED, message, Some(data)));
        }
        let over_http = extensions.get::<OverHttp>().is_some();
        (over_http && self.rules.websocket_only.contains(&method)).then(|| {
            let message =
                format!("{method} is served over WebSocket only: connect to ws://<host>:<port>/");
            ErrorObject::owned(NOT_AVAILABLE, message, None::<()>)
        })
    }

    fn is_unsubscribe(&self, request: &Request<'_>) -> bool {
        self.rules
            .named_unsubscribe
            .contains(&request.method.as_ref())
    }

    /// `{"subscription": id}` becomes `[id]` for a named unsubscribe method.
    fn by_position(&self, request: &mut Request<'_>) {
        if self.is_unsubscribe(request) {
            by_position(request);
        }
    }
}

/// The first positional parameter of a call, as JSON text.
fn first_param(request: &Request<'_>) -> Option<String> {
    let params: Vec<Value> = serde_json::from_str(request.params.as_ref()?.get()).ok()?;
    params.first().map(Value::to_string)
}

fn by_position(request: &mut Request<'_>) {
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
    use crate::config::AuthConfig;
    use jsonrpsee::types::Id;

    fn request(method: &str, params: &str) -> Request<'static> {
        let params = RawValue::from_string(params.to_string()).unwrap();
        let mut request = Request::borrowed("", None, Id::Number(1));
        request.method = Cow::Owned(method.to_string());
        request.params = Some(Cow::Owned(params));
        request
    }

    fn calls(token: Option<&str>) -> Calls<()> {
        let rules = CallRules {
            open_methods: vec!["health_check"],
            admin_methods: vec!["kill_job"],
            websocket_only: vec!["subscribe_logs"],
            named_unsubscribe: vec!["unsubscribe_logs"],
            accepting: Accepting::default(),
            param_errors: None,
        };
        let auth = Auth::new(&AuthConfig {
            token: token.map(str::to_string),
            admin_token: Some("admin".into()),
            ..AuthConfig::default()
        })
        .unwrap();
        Calls {
            inner: (),
            rules: Arc::new(rules),
            auth: Arc::new(auth),
        }
    }

    /// An inner service that answers every call with `result`.
    #[derive(Clone)]
    struct Answers(Value);

    impl RpcServiceT for Answers {
        type MethodResponse = MethodResponse;
        type NotificationResponse = MethodResponse;
        type BatchResponse = MethodResponse;

        fn call<'a>(
            &self,
            request: Request<'a>,
        ) -> impl Future<Output = MethodResponse> + Send + 'a {
            let id = request.id.into_owned();
            let result = jsonrpsee::ResponsePayload::success(self.0.clone());
            std::future::ready(MethodResponse::response(id, result, usize::MAX))
        }

        fn batch<'a>(&self, _: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
            std::future::ready(MethodResponse::notification())
        }

        fn notification<'a>(
            &self,
            _: Notification<'a>,
        ) -> impl Future<Output = MethodResponse> + Send + 'a {
            std::future::ready(MethodResponse::notification())
        }
    }

    #[tokio::test]
    async fn an_unsubscribe_that_finds_nothing_ends_a_subscription_being_accepted() {
        let plain = calls(None);
        let accepting = Accepting::default();
        let calls = Calls {
            inner: Answers(json!(false)),
            rules: Arc::new(CallRules {
                accepting: accepting.clone(),
                ..(*plain.rules).clone()
            }),
            auth: plain.auth.clone(),
        };
        let answer = |response: MethodResponse| -> Value {
            serde_json::from_str::<Value>(response.as_json().get()).unwrap()["result"].clone()
        };
        // Nothing is being accepted: jsonrpsee's `false` stands.
        let unknown = calls
            .call(request("unsubscribe_logs", r#"{"subscription": "abc"}"#))
            .await;
        assert_eq!(answer(unknown), json!(false));
        // The subscription's id went out but it is not registered yet: it is ended.
        accepting.begin(r#""abc""#);
        let racing = calls
            .call(request("unsubscribe_logs", r#"{"subscription": "abc"}"#))
            .await;
        assert_eq!(answer(racing), json!(true));
        assert!(accepting.end(r#""abc""#), "cancelled once accepted");
    }

    #[test]
    fn the_named_form_becomes_positional() {
        let calls = calls(None);
        let mut named = request("unsubscribe_logs", r#"{"subscription": "abc"}"#);
        calls.by_position(&mut named);
        assert_eq!(named.params.unwrap().get(), r#"["abc"]"#);
        for (method, params) in [
            ("unsubscribe_logs", r#"["abc"]"#),
            ("unsubscribe_logs", r#"{"subscription": "abc", "other": 1}"#),
            ("get_logs", r#"{"subscription": "abc"}"#),
        ] {
            let mut left = request(method, params);
            calls.by_position(&mut left);
            assert_eq!(left.params.unwrap().get(), params, "{method} {params}");
        }
    }

    #[test]
    fn methods_are_refused_by_caller() {
        let calls = calls(Some("user"));
        let bearer = |token: &str| {
            let mut headers = axum::http::HeaderMap::new();
            let value = format!("Bearer {token}").parse().unwrap();
            headers.insert(axum::http::header::AUTHORIZATION, value);
            calls.auth.identify(&headers)
        };
        let (user, admin) = (bearer("user"), bearer("admin"));
        let as_caller = |method: &str, caller: Caller| {
            let mut call = request(method, "{}");
            call.extensions_mut().insert(caller);
            calls.refusal(&call).map(|e| e.code())
        };
        assert_eq!(as_caller("health_check", Caller::Anonymous), None);
        assert_eq!(
            as_caller("list_queue", Caller::Anonymous),
            Some(UNAUTHORIZED)
        );
        assert_eq!(as_caller("list_queue", user.clone()), None);
        assert_eq!(as_caller("kill_job", user.clone()), Some(UNAUTHORIZED));
        assert_eq!(as_caller("kill_job", admin), None);
        let mut over_http = request("subscribe_logs", "{}");
        over_http.extensions_mut().insert(user);
        over_http.extensions_mut().insert(OverHttp);
        assert_eq!(
            calls.refusal(&over_http).map(|e| e.code()),
            Some(NOT_AVAILABLE)
        );
    }
}
