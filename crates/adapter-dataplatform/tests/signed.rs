//! Signed HTTP deliveries, checked by an independent implementation of the Standard
//! Webhooks verification: Python's `hmac`, `hashlib` and `base64`, run as `python3`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adapter_dataplatform::{HttpDataPlatform, WebhookSecret};
use anyhow::{Context, bail};
use domain::outbox::OutboxEvent;
use domain::ports::DataPlatform;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The key `[0, 1, …, 31]` as `whsec_<base64>`.
const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Another key of the same length.
const OTHER_SECRET: &str = "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

/// Verifies a delivery as a receiver would (reads the body from stdin): exit 0 when one
/// of the `v1,` signatures is the HMAC-SHA256 of `id.timestamp.body`, else exit 1.
const VERIFY_PY: &str = r#"
import base64, hashlib, hmac, sys
secret, msg_id, timestamp, header = sys.argv[1:5]
key = base64.b64decode(secret.removeprefix("whsec_"))
body = sys.stdin.buffer.read()
expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
ok = any(hmac.compare_digest(sig.removeprefix("v1,"), expected) for sig in header.split(" ") if sig.startswith("v1,"))
sys.exit(0 if ok else 1)
"#;

fn python_verifies(
    secret: &str,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
) -> anyhow::Result<bool> {
    let mut child = Command::new("python3")
        .args(["-c", VERIFY_PY, secret, id, timestamp, signature])
        .stdin(Stdio::piped())
        .spawn()
        .context("running python3 (the independent verifier)")?;
    child
        .stdin
        .take()
        .context("python3's stdin")?
        .write_all(body)?;
    let status = child.wait()?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => bail!("the verifier failed: {status}"),
    }
}

fn header<'r>(request: &'r wiremock::Request, name: &str) -> anyhow::Result<&'r str> {
    request
        .headers
        .get(name)
        .with_context(|| format!("no {name} header"))?
        .to_str()
        .with_context(|| format!("{name} is not text"))
}

#[tokio::test]
async fn a_signed_delivery_verifies_with_an_independent_implementation_and_not_with_another_secret()
-> anyhow::Result<()> {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&receiver)
        .await;
    // Non-ASCII text and escapes: the signature covers the bytes, not a re-encoding.
    let payload =
        r#"{"eventId":"9f2c","eventType":"ORDER_PAID","order":{"note":"데이터 \"플랫폼\""}}"#;
    let event = OutboxEvent {
        id: "9f2c".into(),
        event_type: "ORDER_PAID".into(),
        payload: payload.into(),
        attempts: 1,
    };
    let platform = HttpDataPlatform::new(receiver.uri(), Duration::from_secs(2), None)?
        .signed(WebhookSecret::parse(SECRET)?);
    platform.deliver(&event).await?;

    let requests = receiver.received_requests().await.unwrap_or_default();
    let [request] = requests.as_slice() else {
        bail!("expected one request, got {}", requests.len());
    };
    assert_eq!(request.body, payload.as_bytes(), "the body is the payload");
    let (id, timestamp, signature) = (
        header(request, "webhook-id")?,
        header(request, "webhook-timestamp")?,
        header(request, "webhook-signature")?,
    );
    assert_eq!(id, "9f2c");
    assert_eq!(header(request, "idempotency-key")?, "9f2c");
    assert!(signature.starts_with("v1,"), "{signature}");
    // A receiver's usual tolerance: within five minutes of its clock.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let sent: u64 = timestamp.parse()?;
    assert!(now.abs_diff(sent) <= 300, "timestamp {sent}, now {now}");

    assert!(python_verifies(
        SECRET,
        id,
        timestamp,
        signature,
        &request.body
    )?);
    assert!(
        !python_verifies(OTHER_SECRET, id, timestamp, signature, &request.body)?,
        "another secret does not verify"
    );
    let mut tampered = request.body.clone();
    tampered.push(b' ');
    assert!(
        !python_verifies(SECRET, id, timestamp, signature, &tampered)?,
        "another body does not verify"
    );
    Ok(())
}

#[tokio::test]
async fn without_a_secret_no_webhook_headers_are_sent() -> anyhow::Result<()> {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let platform = HttpDataPlatform::new(receiver.uri(), Duration::from_secs(2), None)?;
    let event = OutboxEvent {
        id: "a1".into(),
        event_type: "ORDER_PAID".into(),
        payload: "{}".into(),
        attempts: 1,
    };
    platform.deliver(&event).await?;
    let requests = receiver.received_requests().await.unwrap_or_default();
    let [request] = requests.as_slice() else {
        bail!("expected one request, got {}", requests.len());
    };
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert!(request.headers.get(name).is_none(), "{name} sent unsigned");
    }
    Ok(())
}
