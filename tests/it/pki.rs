//! Throw-away certificates for the tests that speak TLS (Redis, RabbitMQ, SMTP), made with the
//! `openssl` command.

/// A throw-away CA (`ca.crt`), a server certificate it signs for 127.0.0.1 (`server.crt`,
/// `server.key`), a client certificate it signs (`client.crt`, `client.key`), and a second CA
/// that signs neither (`other.crt`).
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("the openssl command must be installed (./deploy/test.sh installs it)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        for (ca, cn) in [("ca", "callpool test CA"), ("other", "another test CA")] {
            let (key, crt, subj) = (format!("{ca}.key"), format!("{ca}.crt"), format!("/CN={cn}"));
            run(&[&["req", "-x509"][..], &ec, &["-keyout", &key, "-out", &crt, "-days", "2", "-subj", &subj]].concat());
        }
        for (name, ext) in [
            ("server", "subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n"),
            ("client", "subjectAltName = DNS:callpool-node\nextendedKeyUsage = clientAuth\n"),
        ] {
            let (key, csr, crt, extfile) =
                (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
            std::fs::write(dir.path().join(&extfile), format!("basicConstraints = CA:FALSE\n{ext}")).unwrap();
            run(&[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}")]].concat());
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ]);
        }
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}
