//! Signed deliveries, as the Standard Webhooks specification says: an endpoint with a
//! `signing_secret` (`whsec_` and the key in base64) gets `webhook-id` (the occurrence's ledger
//! key, the same on every retry), `webhook-timestamp` (Unix seconds of the attempt) and
//! `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`) with every
//! `http` request, so that a receiver verifies it with the specification's libraries and
//! rejects a replay by its timestamp.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// The key's length in bytes, as the specification allows it.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// An endpoint's signing key.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// Reads `secret`, the value of configuration key `key`.
    pub fn parse(key: &str, secret: &str) -> anyhow::Result<SigningKey> {
        let expected = format!(
            "{key} must be {PREFIX} followed by a key of {} to {} bytes in base64",
            KEY_BYTES.start(),
            KEY_BYTES.end()
        );
        let Some(encoded) = secret.strip_prefix(PREFIX) else {
            anyhow::bail!("{expected}; it does not start with {PREFIX}");
        };
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|error| anyhow::anyhow!("{expected}; it is not base64: {error}"))?;
        if !KEY_BYTES.contains(&bytes.len()) {
            anyhow::bail!("{expected}; it is {} bytes", bytes.len());
        }
        Ok(SigningKey(bytes))
    }

    /// The three headers of a delivery of `body` with id `id` at Unix second `timestamp`.
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
        [
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", self.signature(id, timestamp, body)),
        ]
    }

    /// `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`.
    fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // A key of any length is accepted by HMAC; the length was checked when it was read.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the specification's own test suites.
    #[test]
    fn the_specifications_example_is_signed_as_it_says() {
        let key = SigningKey::parse("s", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let [id, timestamp, signature] =
            key.headers("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body);
        assert_eq!(id.1, "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk");
        assert_eq!(timestamp.1, "1649367553");
        assert_eq!(
            signature.1,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn a_secret_that_is_not_one_is_refused_naming_its_key() {
        let error = |secret: &str| {
            SigningKey::parse("endpoints.hooks.signing_secret", secret)
                .unwrap_err()
                .to_string()
        };
        let missing_prefix = error("C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        assert!(
            missing_prefix.contains("endpoints.hooks.signing_secret"),
            "{missing_prefix}"
        );
        assert!(
            missing_prefix.contains("does not start with whsec_"),
            "{missing_prefix}"
        );
        assert!(error("whsec_not base64!").contains("not base64"));
        assert!(error("whsec_c2hvcnQ=").contains("it is 5 bytes"));
    }
}
