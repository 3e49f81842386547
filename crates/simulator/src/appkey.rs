//! A GitHub App's key pair and the RS256 JWTs signed with it: the simulator makes the
//! pair at run time (the app's private key is what an operator downloads from GitHub)
//! and checks every JWT's signature against the public half, its issuer and its times.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

/// An RSA-2048 key pair: the private key as PEM (PKCS#8), the public key as DER.
pub(crate) struct AppKey {
    pub private_pem: String,
    public_der: Vec<u8>,
}

impl AppKey {
    /// A new random key pair; `None` if the platform cannot make one.
    pub(crate) fn generate() -> Option<Self> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).ok()?;
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).ok()?;
        let body = STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
        let private_pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
        Some(Self { private_pem, public_der: pair.public_key().as_ref().to_vec() })
    }

    /// The claims of `jwt` if its RS256 signature is this key's; why not otherwise.
    pub(crate) fn verify(&self, jwt: &str) -> Result<Value, &'static str> {
        let mut parts = jwt.split('.');
        let (Some(header), Some(claims), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("A JSON web token could not be decoded");
        };
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| "A JSON web token could not be decoded");
        let header: Value =
            serde_json::from_slice(&decode(header)?).map_err(|_| "A JSON web token could not be decoded")?;
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err("A JSON web token could not be decoded");
        }
        let signed = &jwt[..jwt.len() - sig.len() - 1];
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.public_der)
            .verify(signed.as_bytes(), &decode(sig)?)
            .map_err(|_| "A JSON web token could not be decoded")?;
        serde_json::from_slice(&decode(claims)?).map_err(|_| "A JSON web token could not be decoded")
    }
}
