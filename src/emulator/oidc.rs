//! Verification of web identity tokens (Kubernetes service-account tokens) the way STS
//! and EKS verify them: a JWT signed by a registered OpenID Connect issuer, checked
//! against the issuer's JSON Web Key Set (the document kube-apiserver publishes at
//! `/openid/v1/jwks`), with the expected audience and an `exp` in the future.
//!
//! Signatures and claims are checked by the `jsonwebtoken` crate (RS256/ES256 and the
//! other JWS algorithms of RFC 7518, on `aws-lc-rs`); this module only picks the key
//! and maps the crate's errors to the STS error an AWS client would see.

use std::collections::BTreeMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

/// Audience of IRSA tokens (the projected token EKS mounts for `AssumeRoleWithWebIdentity`).
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// Audience of EKS Pod Identity tokens (the projected token the Pod Identity Agent takes).
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";

/// The claims of a verified token the emulator uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `iss`, e.g. `https://kubernetes.default.svc.cluster.local`.
    pub issuer: String,
    /// `sub`, e.g. `system:serviceaccount:ads-system:ads-export-operator`.
    pub subject: String,
    /// `exp`: seconds since the epoch (UTC).
    pub expires_at: u64,
}

impl VerifiedToken {
    /// `(namespace, name)` of a `system:serviceaccount:<namespace>:<name>` subject.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        let rest = self.subject.strip_prefix("system:serviceaccount:")?;
        let (ns, name) = rest.split_once(':')?;
        (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
    }
}

/// Why a token was refused, with the STS error code it is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// STS error code: `InvalidIdentityToken` or `ExpiredTokenException`.
    pub code: &'static str,
    /// STS-style message (never contains the token).
    pub message: String,
}

impl TokenError {
    fn invalid(message: impl Into<String>) -> Self {
        TokenError { code: "InvalidIdentityToken", message: message.into() }
    }
}

/// The registered OpenID Connect providers: issuer URL -> its key set.
#[derive(Debug, Clone, Default)]
pub struct OidcProviders {
    providers: BTreeMap<String, JwkSet>,
}

#[derive(Deserialize)]
struct UnverifiedClaims {
    iss: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: u64,
}

impl OidcProviders {
    /// Registers (or replaces the keys of) the provider `issuer`.
    pub fn set(&mut self, issuer: String, jwks: JwkSet) {
        self.providers.insert(issuer, jwks);
    }

    /// The registered issuers, sorted.
    pub fn issuers(&self) -> Vec<String> {
        self.providers.keys().cloned().collect()
    }

    /// Verifies `token` for `audience` at `now_secs` (seconds since the epoch, UTC).
    ///
    /// # Errors
    /// `InvalidIdentityToken` for a token that is not a JWT, an issuer that is not
    /// registered, no matching key, a bad signature, a wrong audience or a missing
    /// claim; `ExpiredTokenException` for an `exp` not after `now_secs`.
    pub fn verify(&self, token: &str, audience: &str, now_secs: u64) -> Result<VerifiedToken, TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::invalid("The ID Token provided is not a valid JWT."))?;
        let claims: UnverifiedClaims = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| TokenError::invalid("The ID Token provided is not a valid JWT."))?;
        let issuer = claims.iss.ok_or_else(|| TokenError::invalid("The ID Token has no 'iss' claim."))?;
        let Some(keys) = self.providers.get(&issuer) else {
            return Err(TokenError::invalid(format!("No OpenIDConnect provider found in your account for {issuer}")));
        };
        let candidates: Vec<_> = match &header.kid {
            Some(kid) => keys.find(kid).into_iter().collect(),
            None => keys.keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(TokenError::invalid(format!(
                "Couldn't retrieve verification key from your identity provider {issuer}: no key with kid {:?}",
                header.kid.unwrap_or_default()
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[&issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // STS compares `exp` with its own clock; a test that waits for expiry must see it.
        validation.leeway = 0;
        let mut last = TokenError::invalid("The signature of the ID Token could not be verified.");
        for jwk in candidates {
            let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
            match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
                Ok(data) => {
                    let subject = data.claims.sub.unwrap_or_default();
                    if data.claims.exp <= now_secs {
                        return Err(expired(now_secs, data.claims.exp));
                    }
                    return Ok(VerifiedToken { issuer, subject, expires_at: data.claims.exp });
                }
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => return Err(expired(now_secs, exp_of(token))),
                        ErrorKind::InvalidAudience => TokenError::invalid("Incorrect token audience"),
                        ErrorKind::InvalidIssuer => TokenError::invalid("Incorrect token issuer"),
                        ErrorKind::MissingRequiredClaim(claim) => {
                            TokenError::invalid(format!("The ID Token has no '{claim}' claim."))
                        }
                        ErrorKind::InvalidAlgorithm => {
                            TokenError::invalid("The ID Token's algorithm does not match the provider's key.")
                        }
                        _ => last,
                    };
                    if !matches!(e.kind(), ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

fn expired(now: u64, exp: u64) -> TokenError {
    TokenError {
        code: "ExpiredTokenException",
        message: format!("Token expired: current date/time {now} must be before the expiration date/time {exp}"),
    }
}

fn exp_of(token: &str) -> u64 {
    jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(token).map(|c| c.exp).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_subjects() {
        let t = |s: &str| VerifiedToken { issuer: "i".into(), subject: s.into(), expires_at: 0 };
        assert_eq!(t("system:serviceaccount:ns:sa").service_account(), Some(("ns", "sa")));
        for bad in
            ["", "system:serviceaccount:ns", "system:serviceaccount::sa", "user:x:y", "system:serviceaccount:a:b:c"]
        {
            assert_eq!(t(bad).service_account(), None, "{bad:?}");
        }
    }

    #[test]
    fn malformed_and_unknown_issuer() {
        let p = OidcProviders::default();
        let e = p.verify("not-a-jwt", STS_AUDIENCE, 0).unwrap_err();
        assert_eq!(e.code, "InvalidIdentityToken");
        // header {"alg":"RS256"}, claims {"iss":"https://x"}, bogus signature
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL3gifQ.c2ln";
        let e = p.verify(token, STS_AUDIENCE, 0).unwrap_err();
        assert_eq!(e.code, "InvalidIdentityToken");
        assert!(e.message.contains("No OpenIDConnect provider found in your account for https://x"), "{e:?}");
    }
}
