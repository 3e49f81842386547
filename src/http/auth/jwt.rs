//! App JWTs (RS256, RFC 7519) for the `jwt_exchange` auth kind: the app's private key
//! (a PEM credential) signs a short-lived JWT whose issuer is the app, and the token
//! endpoint trades it for an installation token (GitHub Apps). The key and the JWT are
//! secrets: neither is logged nor shown by `Debug`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use zeroize::Zeroizing;

use crate::http::HttpError;

/// The JWT's issue time is set this far in the past (clock drift, as GitHub advises).
pub(super) const BACKDATE_SECS: i64 = 60;

/// A JWT signed with `pem` (an RSA private key, PKCS#1 or PKCS#8) for `issuer`, issued
/// [`BACKDATE_SECS`] before `now` and expiring `ttl_secs` after `now`.
pub(super) fn sign(pem: &str, issuer: &str, now: i64, ttl_secs: u64) -> Result<Zeroizing<String>, HttpError> {
    let bad = |why: &str| HttpError::Credentials(format!("the app's private key {why}"));
    let der = PrivateKeyDer::from_pem_slice(pem.trim().as_bytes()).map_err(|_| bad("is not a PEM private key"))?;
    let key = match &der {
        PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
        PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
        _ => return Err(bad("is not an RSA key")),
    }
    .map_err(|_| bad("is not a usable RSA key (2048 to 8192 bits)"))?;
    let ttl = i64::try_from(ttl_secs.min(crate::config::JWT_MAX_TTL_SECS)).unwrap_or(0);
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({ "iat": now - BACKDATE_SECS, "exp": now + ttl, "iss": issuer });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut out = Zeroizing::new(format!("{header}.{claims}"));
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), out.as_bytes(), &mut signature)
        .map_err(|_| bad("could not sign"))?;
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_are_not_rsa_pem_are_refused_without_showing_them() {
        let e = sign("not a key at all", "1", 0, 540).unwrap_err().to_string();
        assert!(e.contains("not a PEM private key"), "{e}");
        let fake = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let e = sign(fake, "1", 0, 540).unwrap_err().to_string();
        assert!(e.contains("not a usable RSA key") && !e.contains("AAAA"), "{e}");
    }
}
