//! The `shop-server token` command: `token --sub <subject> [--admin] [--ttl 1h]`.

use std::time::Duration;

use adapter_identity::{TokenRequest, mint_hs256};

use crate::Config;

pub const TOKEN_USAGE: &str = "usage: shop-server token --sub <subject> [--admin] [--ttl 1h]";

/// The longest `--ttl`: a day.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// The arguments of `shop-server token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenArgs {
    pub subject: String,
    pub admin: bool,
    pub ttl: Duration,
}

impl TokenArgs {
    /// Parses the arguments after `token`.
    ///
    /// # Errors
    /// On a missing `--sub`, an unknown flag or a bad `--ttl`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let mut args = args.into_iter();
        let (mut subject, mut admin, mut ttl) = (None, false, Duration::from_secs(3600));
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--sub" => subject = args.next(),
                "--admin" => admin = true,
                "--ttl" => {
                    let value = args.next().unwrap_or_default();
                    ttl = parse_ttl(&value)?;
                }
                other => anyhow::bail!("unknown argument {other:?}; {TOKEN_USAGE}"),
            }
        }
        let subject = subject
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow::anyhow!("--sub <subject> is required; {TOKEN_USAGE}"))?;
        Ok(Self {
            subject,
            admin,
            ttl,
        })
    }
}

/// `90`, `90s`, `15m`, `1h` or `1d`: at least a second, at most [`MAX_TTL`].
///
/// # Errors
/// On anything else.
pub fn parse_ttl(text: &str) -> anyhow::Result<Duration> {
    let (number, unit) = match text.char_indices().last() {
        Some((at, 's')) => (text.get(..at), 1),
        Some((at, 'm')) => (text.get(..at), 60),
        Some((at, 'h')) => (text.get(..at), 3600),
        Some((at, 'd')) => (text.get(..at), 86_400),
        _ => (Some(text), 1),
    };
    let secs = number
        .and_then(|n| n.parse::<u64>().ok())
        .and_then(|n| n.checked_mul(unit))
        .filter(|&secs| secs >= 1)
        .map(Duration::from_secs)
        .filter(|ttl| *ttl <= MAX_TTL)
        .ok_or_else(|| {
            anyhow::anyhow!("--ttl {text:?}: give 1s to 1d, as 90, 90s, 15m, 1h or 1d")
        })?;
    Ok(secs)
}

/// A token for `args`, signed with `AUTH_JWT_SECRET` and carrying `AUTH_JWT_ISSUER`
/// and `AUTH_JWT_AUDIENCE` when they are set, so the server configured alike accepts it.
///
/// # Errors
/// Without `AUTH_JWT_SECRET`, or when it is invalid.
pub fn token(config: &Config, args: &TokenArgs) -> anyhow::Result<String> {
    let secret = config.auth_jwt_secret.as_deref().ok_or_else(|| {
        anyhow::anyhow!("AUTH_JWT_SECRET is not set: there is no key to sign the token with")
    })?;
    mint_hs256(
        secret.as_bytes(),
        &TokenRequest {
            subject: &args.subject,
            admin: args.admin,
            ttl: args.ttl,
            issuer: config.auth_jwt_issuer.as_deref(),
            audience: config.auth_jwt_audience.as_deref(),
        },
    )
}

#[cfg(test)]
mod tests {
    use adapter_identity::Verifier;
    use domain::identity::Principal;
    use domain::user::Subject;

    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<TokenArgs> {
        TokenArgs::parse(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn the_three_flags_are_read() {
        assert_eq!(
            parse(&["--sub", "alice"]).unwrap(),
            TokenArgs {
                subject: "alice".into(),
                admin: false,
                ttl: Duration::from_secs(3600)
            }
        );
        assert_eq!(
            parse(&["--admin", "--ttl", "15m", "--sub", "ops"]).unwrap(),
            TokenArgs {
                subject: "ops".into(),
                admin: true,
                ttl: Duration::from_secs(900)
            }
        );
        for bad in [
            &[][..],
            &["--sub"],
            &["--sub", ""],
            &["--sub", "a", "--ttl"],
            &["--sub", "a", "--what"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ttls_have_units_and_bounds() {
        for (text, secs) in [
            ("90", 90),
            ("90s", 90),
            ("15m", 900),
            ("1h", 3600),
            ("1d", 86_400),
        ] {
            assert_eq!(
                parse_ttl(text).unwrap(),
                Duration::from_secs(secs),
                "{text}"
            );
        }
        for bad in [
            "",
            "0",
            "0s",
            "2d",
            "h",
            "1x",
            "-1h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_token_is_accepted_by_a_server_configured_alike() {
        let secret = "0123456789abcdef0123456789abcdef";
        let config = Config {
            auth_jwt_secret: Some(secret.into()),
            auth_jwt_issuer: Some("https://id.example".into()),
            auth_jwt_audience: Some("shop".into()),
            ..Config::default()
        };
        let args = parse(&["--sub", "ops", "--admin"]).unwrap();
        let token = token(&config, &args).unwrap();
        let server = |issuer: &str| {
            Verifier::hs256(secret.as_bytes(), Some(issuer.into()), Some("shop".into()))
                .unwrap()
                .verify(&token)
        };
        assert_eq!(
            server("https://id.example"),
            Ok(Principal {
                subject: Subject::new("https://id.example", "ops").unwrap(),
                admin: true
            })
        );
        assert!(
            server("https://other.example").is_err(),
            "iss is in the token"
        );
        assert!(super::token(&Config::default(), &args).is_err());
    }
}
