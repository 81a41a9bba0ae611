//! Long-poll session tokens: which connector holds a session (its home) and which session it
//! is, signed so that any connector of the deployment can tell a token it may relay from a
//! forged or altered one, without a shared table.
//!
//! Format (URL-safe, no `=`, 96 to a few hundred bytes):
//! `lp1.<home connector id, base64url>.<session id, decimal>.<tag, base64url>`, where the tag is
//! the first 16 bytes of HMAC-SHA256 over everything before the last dot, keyed by a key derived
//! from the JWT secret every connector shares. The prefix also tells a session token apart
//! from a JWT in the query's `token`, which phoenix.js ≤ 1.8.16 sends both of.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// What every session token starts with (the format's version).
pub(crate) const PREFIX: &str = "lp1.";

/// Longest token read; anything longer is not one of ours (connector ids are short).
const MAX_LEN: usize = 512;

/// Bytes of the HMAC kept in a token: 128 bits, unguessable.
const TAG_LEN: usize = 16;

/// Domain separation: the session-token key is not the JWT secret itself, so a token tag can
/// never be replayed as any other MAC made with that secret.
const CONTEXT: &[u8] = b"fawkes long-poll session token v1";

/// Where a verified token says its session lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionRef {
    /// The connector that created the session and runs it.
    pub(crate) home: String,
    /// The session's socket id on its home connector.
    pub(crate) session_id: u64,
}

/// Signs and verifies session tokens. Debug never prints the key.
#[derive(Clone)]
pub(crate) struct TokenKey {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(**redacted**)")
    }
}

impl TokenKey {
    /// The key for the deployment whose JWT secret is `secret`.
    pub(crate) fn derive(secret: &[u8]) -> Self {
        let tag = mac(secret).chain_update(CONTEXT).finalize().into_bytes();
        let mut key = [0u8; 32];
        for (slot, byte) in key.iter_mut().zip(tag.iter()) {
            *slot = *byte;
        }
        Self { key }
    }

    /// A token for session `session_id` homed on connector `home`.
    pub(crate) fn sign(&self, home: &str, session_id: u64) -> String {
        let signed = format!("{PREFIX}{}.{session_id}", URL_SAFE_NO_PAD.encode(home));
        let tag = mac(&self.key).chain_update(signed.as_bytes()).finalize();
        let tag = tag.into_bytes();
        let short = tag.get(..TAG_LEN).unwrap_or_default();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(short))
    }

    /// The session a token names, if it is one of ours and unaltered; `None` for anything
    /// else (a JWT, garbage, a token of another deployment).
    pub(crate) fn verify(&self, token: &str) -> Option<SessionRef> {
        if token.len() > MAX_LEN {
            return None;
        }
        let rest = token.strip_prefix(PREFIX)?;
        let (signed_rest, tag) = rest.rsplit_once('.')?;
        let (home, session) = signed_rest.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != TAG_LEN {
            return None;
        }
        let signed = token.get(..PREFIX.len() + signed_rest.len())?;
        mac(&self.key)
            .chain_update(signed.as_bytes())
            .verify_truncated_left(&tag)
            .ok()?;
        // Only what was signed is read below, so a valid tag vouches for every byte.
        let home = String::from_utf8(URL_SAFE_NO_PAD.decode(home).ok()?).ok()?;
        if session.is_empty() || !session.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let session_id = session.parse().ok()?;
        Some(SessionRef { home, session_id })
    }
}

/// Whether `token` looks like a session token (it may still fail verification).
pub(crate) fn is_session_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> TokenKey {
        TokenKey::derive(b"test-secret")
    }

    #[test]
    fn verifies_what_it_signs() {
        let token = key().sign("connector-abc-1", 42);
        assert!(token.starts_with(PREFIX), "{token}");
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert_eq!(
            key().verify(&token),
            Some(SessionRef {
                home: "connector-abc-1".into(),
                session_id: 42
            })
        );
        assert!(is_session_token(&token));
        assert!(!is_session_token("eyJhbGciOiJIUzI1NiJ9.e30.sig"));
    }

    #[test]
    fn refuses_other_keys_and_altered_tokens() {
        let token = key().sign("pod-a", 7);
        assert_eq!(TokenKey::derive(b"other").verify(&token), None);
        let forged = key().sign("pod-a", 8).replace(".8.", ".7.");
        assert_eq!(key().verify(&forged), None, "tag of another session");
        let other_home = token.replacen(
            &URL_SAFE_NO_PAD.encode("pod-a"),
            &URL_SAFE_NO_PAD.encode("pod-b"),
            1,
        );
        assert_eq!(key().verify(&other_home), None);
        for bad in [
            "",
            "lp1.",
            "lp1...",
            "lp1.cG9k.7.",
            "lp1.cG9k.-7.AAAA",
            "not a token",
        ] {
            assert_eq!(key().verify(bad), None, "{bad}");
        }
        assert!(format!("{:?}", key()).contains("redacted"));
    }

    proptest! {
        /// Any home and session round-trip through a token.
        #[test]
        fn round_trips(home in "\\PC{0,64}", session_id in any::<u64>()) {
            let token = key().sign(&home, session_id);
            prop_assert_eq!(key().verify(&token), Some(SessionRef { home, session_id }));
        }

        /// Arbitrary input never panics and is never taken for a session.
        #[test]
        fn arbitrary_text_is_refused(text in "\\PC{0,600}") {
            prop_assert_eq!(key().verify(&text), None);
        }

        /// Changing any one byte of a valid token makes it invalid (or, if the change keeps it
        /// the same token, leaves it naming the same session).
        #[test]
        fn any_altered_byte_is_refused(session_id in any::<u64>(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let token = key().sign("connector-x", session_id);
            let mut bytes = token.clone().into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if let Ok(altered) = String::from_utf8(bytes) {
                let verified = key().verify(&altered);
                if altered == token {
                    prop_assert!(verified.is_some());
                } else {
                    prop_assert_eq!(verified, None);
                }
            }
        }
    }
}
