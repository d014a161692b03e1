//! TLS with rustls (the one TLS stack of the tree, on the `ring` provider): the server's
//! certificate from PEM files, reloaded on SIGHUP, with client certificates required when
//! `--client-ca` is given (mutual TLS); and the clients' side (the CLI and `tempora worker`):
//! the system's roots, or only `--ca-cert`'s, and a client certificate when asked for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Make `ring` the process's TLS provider (once, before any TLS is set up).
pub fn install_provider() {
    // An error means a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// TLS options of a client (CLI commands, `tempora worker`).
#[derive(Debug, Clone, Default, Args)]
pub struct ClientTls {
    /// CA certificates (PEM) that an `https://` server's certificate must chain to, instead of
    /// the system's roots.
    #[arg(long, global = true, env = "TEMPORA_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM, with its chain) for a server that requires one (`--client-ca`).
    #[arg(long, global = true, env = "TEMPORA_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "TEMPORA_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
}

impl ClientTls {
    /// `builder` with these options applied.
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, String> {
        install_provider();
        let mut builder = builder;
        if let Some(ca) = &self.ca_cert {
            let pem = read(ca)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("--ca-cert {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "--ca-cert {}: no certificate in the file",
                    ca.display()
                ));
            }
            builder = builder.tls_certs_only(certs);
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| format!("--client-cert/--client-key: {e}"))?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => return Err("--client-cert and --client-key go together".into()),
        }
        Ok(builder)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The server's TLS files.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// When set, every client must present a certificate that chains to these CAs (PEM).
    pub client_ca: Option<PathBuf>,
}

impl ServerTls {
    /// Read the files into a rustls server configuration (HTTP/1.1).
    pub fn config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        install_provider();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|it| it.collect::<Result<_, _>>())
            .with_context(|| format!("--tls-cert {}", self.cert.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "--tls-cert {}: no certificate in the file",
            self.cert.display()
        );
        let key = PrivateKeyDer::from_pem_file(&self.key).with_context(|| {
            format!(
                "--tls-key {}: no usable private key (PEM) in the file",
                self.key.display()
            )
        })?;
        if let Ok(meta) = std::fs::metadata(&self.key) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    message = "the TLS key file can be read by other users; make it 0600",
                    path = %self.key.display()
                );
            }
        }
        let builder = ServerConfig::builder();
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca)
                    .with_context(|| format!("--client-ca {}", ca.display()))?
                {
                    roots
                        .add(cert.with_context(|| format!("--client-ca {}", ca.display()))?)
                        .with_context(|| format!("--client-ca {}", ca.display()))?;
                }
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .with_context(|| format!("--client-ca {}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .context("--tls-cert/--tls-key do not make a usable pair")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
