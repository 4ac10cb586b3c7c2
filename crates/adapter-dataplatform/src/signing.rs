//! Standard Webhooks signatures (<https://www.standardwebhooks.com>) of HTTP deliveries:
//! `webhook-signature: v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, where
//! the key is the base64 text after `whsec_` in `DATA_PLATFORM_SECRET`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The fewest key bytes a secret may hold (the scheme asks for 24 to 64).
pub const MIN_SECRET_BYTES: usize = 24;
/// The most key bytes a secret may hold.
pub const MAX_SECRET_BYTES: usize = 64;

/// A webhook signing key, parsed from its `whsec_<base64>` text. Its `Debug` shows no key.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecret")
            .field("key_bytes", &self.key.len())
            .finish_non_exhaustive()
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64 of 24 to 64 bytes>` (standard alphabet, padded).
    ///
    /// # Errors
    /// When the text does not start with `whsec_`, the rest is not base64, or the key is
    /// shorter than [`MIN_SECRET_BYTES`] or longer than [`MAX_SECRET_BYTES`]. The message
    /// never holds the secret.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let Some(encoded) = text.strip_prefix("whsec_") else {
            anyhow::bail!("DATA_PLATFORM_SECRET must be written as whsec_<base64>");
        };
        let Ok(key) = STANDARD.decode(encoded) else {
            anyhow::bail!("DATA_PLATFORM_SECRET: the text after whsec_ is not valid base64");
        };
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            anyhow::bail!(
                "DATA_PLATFORM_SECRET must hold {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes \
                 (got {})",
                key.len()
            );
        }
        Ok(Self { key })
    }

    /// The `webhook-signature` header value of `body` sent as message `id` at
    /// `timestamp` (Unix seconds): `v1,<base64 of the HMAC-SHA256>`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        // Any key length is valid for HMAC; the error branch cannot happen.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_whsec_and_base64_of_24_to_64_bytes() {
        let ok = format!("whsec_{}", STANDARD.encode([7_u8; 32]));
        assert!(WebhookSecret::parse(&ok).is_ok());
        for bad in [
            STANDARD.encode([7_u8; 32]),
            "whsec_not base64!".to_owned(),
            format!("whsec_{}", STANDARD.encode([7_u8; 23])),
            format!("whsec_{}", STANDARD.encode([7_u8; 65])),
            "whsec_".to_owned(),
        ] {
            let err = WebhookSecret::parse(&bad).unwrap_err().to_string();
            assert!(err.contains("DATA_PLATFORM_SECRET"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_signature_matches_the_standard_webhooks_reference_vector() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn the_debug_form_shows_no_key() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(!format!("{secret:?}").contains("MfKQ"));
    }
}
