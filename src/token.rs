//! `fawkes token`: mint a development JWT.

use anyhow::Context;
use connector::{Authenticator, JwtSecret, TokenClaims};

use crate::cli::{TokenArgs, DEV_JWT_SECRET};

/// Mints the token described by `args`.
pub fn mint(args: &TokenArgs) -> anyhow::Result<String> {
    let secret = JwtSecret::new(
        args.jwt_secret
            .clone()
            .unwrap_or_else(|| DEV_JWT_SECRET.into()),
    );
    let auth = Authenticator::new(&secret).context("unusable JWT secret")?;
    let exp = chrono::Utc::now().timestamp().max(0).unsigned_abs() + args.ttl.as_secs();
    let claims = TokenClaims {
        sub: args.sub.clone(),
        exp,
        roles: args.roles.clone(),
        name: args.name.clone(),
    };
    auth.mint(&claims).context("could not sign the token")
}
