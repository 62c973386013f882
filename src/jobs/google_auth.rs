//! Google's OAuth 2.0 for service accounts: a key file read (never shown), a JWT signed RS256
//! with its key, exchanged at its `token_uri` for an access token.

use base64::Engine as _;
use callpool_pool::Ts;
use serde::Deserialize;
use serde_json::{json, Value};

/// A Google service account's key file (the JSON Google gives), read: never shown anywhere.
pub struct ServiceAccount {
    pub client_email: String,
    private_key_id: Option<String>,
    pub token_uri: String,
    key: ring::rsa::KeyPair,
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: String,
    private_key_id: Option<String>,
    private_key: String,
    token_uri: Option<String>,
}

impl ServiceAccount {
    /// Reads a key file's JSON. A problem says what is wrong, never what the file holds.
    pub fn parse(json: &str) -> Result<ServiceAccount, String> {
        // serde's own message may quote the file: only its kind is told.
        let f: KeyFile = serde_json::from_str(json).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => "a JSON file without client_email and private_key".to_owned(),
            _ => "not a JSON file (the key file Google gives for a service account)".to_owned(),
        })?;
        if f.kind.as_deref().is_some_and(|k| k != "service_account") {
            return Err("its type is not \"service_account\"".into());
        }
        let pem: String = f.private_key.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(pem.trim())
            .map_err(|_| "its private_key is not a PEM key".to_owned())?;
        let key = if f.private_key.contains("BEGIN RSA PRIVATE KEY") {
            ring::rsa::KeyPair::from_der(&der)
        } else {
            ring::rsa::KeyPair::from_pkcs8(&der)
        }
        .map_err(|e| format!("its private_key is not an RSA key ring can sign with: {e}"))?;
        Ok(ServiceAccount {
            client_email: f.client_email,
            private_key_id: f.private_key_id,
            token_uri: f.token_uri.unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
            key,
        })
    }

    /// The signed JWT that asks for an access token with `scope`, valid for an hour from `now`.
    pub fn assertion(&self, scope: &str, now: Ts) -> Result<String, String> {
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = json!(kid);
        }
        let iat = now.as_millis().div_euclid(1000);
        let claims = json!({
            "iss": self.client_email, "scope": scope, "aud": self.token_uri, "iat": iat, "exp": iat + 3600,
        });
        let signed = format!("{}.{}", b64(&header), b64(&claims));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the token request failed".to_owned())?;
        Ok(format!("{signed}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)))
    }

    /// An access token for `scope` from Google's token endpoint.
    pub async fn access_token(&self, http: &reqwest::Client, scope: &str, now: Ts) -> Result<String, String> {
        let assertion = self.assertion(scope, now)?;
        let resp = http
            .post(&self.token_uri)
            .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())])
            .send()
            .await
            .map_err(|e| format!("Google's token endpoint did not answer: {}", e.without_url()))?;
        let status = resp.status();
        let body = json_body(resp).await;
        match body["access_token"].as_str() {
            Some(token) if status.is_success() => Ok(token.to_owned()),
            _ => Err(format!(
                "Google refused the service account's token request (HTTP {}): {} {}",
                status.as_u16(),
                body["error"].as_str().unwrap_or("no error code"),
                body["error_description"].as_str().unwrap_or_default()
            )),
        }
    }
}

/// The most of an answer read: a list page or a token answer is a few kilobytes.
pub const MAX_ANSWER: usize = 1 << 20;

/// An answer's body as JSON (`Null` when it is not JSON), read up to [`MAX_ANSWER`] bytes: a
/// service that never stops sending cannot fill the node's memory.
pub async fn json_body(mut resp: reqwest::Response) -> Value {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Value::Null;
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).unwrap_or_default()
}
