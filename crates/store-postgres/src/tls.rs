//! PostgreSQL over TLS (rustls), with libpq's `sslmode` and `sslrootcert` connection
//! parameters, which tokio-postgres does not parse itself:
//!
//! | `sslmode` | connection |
//! |---|---|
//! | `disable`, `allow`, `prefer`, none | plain TCP (as before TLS existed here) |
//! | `require` | TLS; the certificate is not checked (libpq's meaning), unless `sslrootcert` is given, which makes it `verify-ca` (libpq does the same) |
//! | `verify-ca` | TLS; the certificate must chain to `sslrootcert` |
//! | `verify-full` | TLS; the certificate must chain to `sslrootcert` and name the host |

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS parameters of a connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsParams {
    /// `sslmode` as given (lower case).
    pub mode: Option<String>,
    /// `sslrootcert`: the CA certificates (PEM) the server's certificate must chain to.
    pub root_cert: Option<PathBuf>,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Take `sslmode` and `sslrootcert` out of a `postgres://` URL or a `key=value` string; returns
/// the rest (for tokio-postgres) and the TLS parameters.
pub fn split_params(url: &str) -> (String, TlsParams) {
    let mut params = TlsParams::default();
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            params.mode = Some(value.to_ascii_lowercase());
            true
        }
        "sslrootcert" => {
            params.root_cert = Some(PathBuf::from(value));
            true
        }
        _ => false,
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), params);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                !take(k, percent_decode(v))
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, params)
    } else {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                !take(k.trim(), v.trim_matches('\'').to_owned())
            })
            .collect();
        (kept.join(" "), params)
    }
}

/// Why TLS to PostgreSQL cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// An `sslmode` libpq does not know.
    #[error("sslmode `{0}` is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    Mode(String),
    /// `verify-ca`/`verify-full` without `sslrootcert`.
    #[error("sslmode={0} needs sslrootcert=<file of CA certificates (PEM)>")]
    NoRootCert(String),
    /// The CA file could not be read or holds no certificate.
    #[error("sslrootcert {0}: {1}")]
    RootCert(PathBuf, String),
    /// rustls refused the configuration.
    #[error("TLS set-up: {0}")]
    Rustls(String),
}

/// The connector for `params`: None for a plain connection.
pub fn connector(params: &TlsParams) -> Result<Option<MakeRustlsConnect>, TlsError> {
    let mode = params.mode.as_deref().unwrap_or("prefer");
    let verify = match mode {
        "disable" | "allow" | "prefer" => return Ok(None),
        "require" if params.root_cert.is_none() => Verify::Nothing,
        "require" | "verify-ca" => Verify::Chain,
        "verify-full" => Verify::ChainAndName,
        other => return Err(TlsError::Mode(other.to_owned())),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let config = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
        Verify::Chain | Verify::ChainAndName => {
            let path = params
                .root_cert
                .clone()
                .ok_or_else(|| TlsError::NoRootCert(mode.to_owned()))?;
            let roots = roots(&path)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            if verify == Verify::Chain {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                    .with_no_client_auth()
            } else {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            }
        }
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

fn roots(path: &PathBuf) -> Result<RootCertStore, TlsError> {
    let bad = |m: String| TlsError::RootCert(path.clone(), m);
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(roots)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

/// `sslmode=require` without a root certificate: encryption without authentication (libpq's
/// documented meaning). Signatures are still checked, so the session key is the server's.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to the root certificate; the host name is not
/// checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_urls_and_key_value_strings() {
        let (rest, p) = split_params(
            "postgres://u:p@db:5432/t?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        );
        assert_eq!(rest, "postgres://u:p@db:5432/t?application_name=x");
        assert_eq!(p.mode.as_deref(), Some("verify-full"));
        assert_eq!(p.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        let (rest, p) = split_params("postgres://db/t?sslmode=require");
        assert_eq!(rest, "postgres://db/t");
        assert_eq!(p.mode.as_deref(), Some("require"));
        let (rest, p) = split_params("host=db user=u sslmode=verify-ca sslrootcert=/ca.pem");
        assert_eq!(rest, "host=db user=u");
        assert_eq!(p.root_cert, Some(PathBuf::from("/ca.pem")));
        let (rest, p) = split_params("postgres://db/t");
        assert_eq!(
            (rest.as_str(), p),
            ("postgres://db/t", TlsParams::default())
        );
        assert!(matches!(
            connector(&TlsParams {
                mode: Some("verify-full".into()),
                root_cert: None
            }),
            Err(TlsError::NoRootCert(_))
        ));
        assert!(matches!(
            connector(&TlsParams {
                mode: Some("sometimes".into()),
                root_cert: None
            }),
            Err(TlsError::Mode(_))
        ));
        assert!(
            connector(&TlsParams {
                mode: Some("require".into()),
                root_cert: None
            })
            .unwrap()
            .is_some()
        );
    }
}
