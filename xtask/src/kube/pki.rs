//! The test cluster's certificates and kubeconfigs, made with the `openssl` command: one
//! CA, a serving certificate for the API server and the kubelet, and a client certificate
//! per component, each naming the identity RBAC gives it.

use std::{fs, path::Path, process::Command};

use anyhow::{Context, Result};

use super::network::NODE_IP;
use crate::util;

/// A client identity: the certificate's CN is the user, its O the group.
pub(crate) struct Client {
    pub(crate) file: &'static str,
    pub(crate) user: String,
    pub(crate) group: Option<&'static str>,
}

/// The node's name, which the kubelet's identity and the Node authorizer must agree on.
pub(crate) const NODE: &str = "monitor-test-node";

/// Every client of the API server the cluster runs.
pub(crate) fn clients() -> Vec<Client> {
    let client = |file, user: &str, group| Client {
        file,
        user: user.to_string(),
        group,
    };
    vec![
        client("admin", "monitor-test-admin", Some("system:masters")),
        client("controller-manager", "system:kube-controller-manager", None),
        client("scheduler", "system:kube-scheduler", None),
        client(
            "kubelet",
            &format!("system:node:{NODE}"),
            Some("system:nodes"),
        ),
        client("kube-proxy", "system:kube-proxy", None),
        // The API server's own identity towards kubelets.
        client(
            "apiserver-kubelet",
            "monitor-test-apiserver",
            Some("system:masters"),
        ),
    ]
}

/// Writes `ca.crt`, `ca.key`, `apiserver.{crt,key}`, `kubelet-serving.{crt,key}`,
/// `sa.{key,pub}` and a certificate and kubeconfig per client into `dir`, for an API
/// server at `https://NODE_IP:port`.
pub(crate) fn write(dir: &Path, port: u16) -> Result<()> {
    fs::create_dir_all(dir)?;
    let openssl = |args: &[&str]| openssl(dir, args);
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=monitor-test-ca",
    ])
    .context("making the test cluster's CA with openssl")?;
    // The API server is reached at the node's address and, from pods, at the `kubernetes`
    // Service's first address of the range.
    let sans = format!(
        "IP:{NODE_IP},IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,\
         DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    );
    sign(dir, "apiserver", "/CN=kube-apiserver", &sans)?;
    let node_sans = format!("IP:{NODE_IP},DNS:{NODE}");
    sign(dir, "kubelet-serving", &format!("/CN={NODE}"), &node_sans)?;
    for c in clients() {
        let subject = match c.group {
            Some(g) => format!("/O={g}/CN={}", c.user),
            None => format!("/CN={}", c.user),
        };
        sign(dir, c.file, &subject, "DNS:localhost")?;
        kubeconfig(dir, c.file, port)?;
    }
    openssl(&["genrsa", "-out", "sa.key", "2048"])?;
    openssl(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])
}

/// Runs `openssl` in `dir`, quietly unless it fails.
fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    util::output(Command::new("openssl").args(args).current_dir(dir)).map(drop)
}

/// A key and a certificate signed by the CA, good for serving and as a client.
fn sign(dir: &Path, name: &str, subject: &str, sans: &str) -> Result<()> {
    let ext = dir.join(format!("{name}.ext"));
    fs::write(
        &ext,
        format!(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={sans}\n"
        ),
    )?;
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    let run = |args: &[&str]| openssl(dir, args);
    run(&[
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
    ])?;
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
        "-days",
        "2",
        "-out",
        &crt,
        "-extfile",
    ]
    .iter()
    .copied()
    .chain([ext.to_str().unwrap_or_default()])
    .collect::<Vec<_>>())
    .with_context(|| format!("signing the certificate {name}"))
}

/// `NAME.kubeconfig`, for the client whose certificate is `NAME.crt`.
fn kubeconfig(dir: &Path, name: &str, port: u16) -> Result<()> {
    let at = |f: &str| dir.join(f).display().to_string();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    \
         server: https://{NODE_IP}:{port}\n    certificate-authority: {ca}\nusers:\n\
         - name: {name}\n  user:\n    client-certificate: {crt}\n    client-key: {key}\n\
         contexts:\n- name: test\n  context:\n    cluster: test\n    user: {name}\n\
         current-context: test\n",
        ca = at("ca.crt"),
        crt = at(&format!("{name}.crt")),
        key = at(&format!("{name}.key")),
    );
    fs::write(dir.join(format!("{name}.kubeconfig")), text)
        .with_context(|| format!("writing the kubeconfig of {name}"))
}
