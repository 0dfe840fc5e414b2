//! A test certificate authority (rcgen) and the leaf certificates it signs, for the TLS and
//! mutual-TLS tests and benchmarks.

/// A test certificate authority.
pub struct Pki {
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ack-gateway test CA");
        let cert = params.self_signed(&key).expect("CA");
        Pki {
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf certificate (PEM) and its key (PEM); `sans` are DNS names or IP addresses.
    pub fn leaf(&self, common_name: &str, sans: &[&str]) -> (String, String) {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}
