//! Loads an arbitrary policy file and evaluates arbitrary calls against it, then exports it
//! in every format: never a panic, patterns match in linear time, and a loaded policy
//! round-trips through its own YAML.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use monitor_agent::{
    policy::{export, CallFacts, ExportFormat, Placements, Policy},
    record::{CallRecord, Peer, Role},
};

fuzz_target!(|input: &[u8]| {
    // The policy, then a NUL, then calls one per line: `client server METHOD path`.
    let at = input.iter().position(|&b| b == 0).unwrap_or(input.len());
    let doc = String::from_utf8_lossy(&input[..at]);
    let calls = String::from_utf8_lossy(input.get(at + 1..).unwrap_or(&[]));
    let Ok(policy) = Policy::parse("fuzz.yaml", &doc) else {
        return;
    };
    for line in calls.lines() {
        let mut words = line.splitn(4, ' ');
        let (client, server, method, path) = (
            words.next().unwrap_or(""),
            words.next().unwrap_or(""),
            words.next().unwrap_or("GET"),
            words.next().unwrap_or("/"),
        );
        let mut c = Peer::remote("127.0.0.1:40000".parse().unwrap());
        c.service = Some(Arc::from(client));
        let mut s = Peer::local("127.0.0.1:8080".parse().unwrap(), 1, Arc::from("server"));
        s.service = Some(Arc::from(server));
        let record = CallRecord::sample(Role::Server, c, s, method, path);
        let _ = policy.evaluate(&CallFacts::from_record(&record));
    }
    let yaml = policy.to_yaml();
    let again = Policy::parse("again.yaml", &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(again.to_yaml(), yaml);
    for format in [ExportFormat::Policy, ExportFormat::NetworkPolicy, ExportFormat::Cilium, ExportFormat::Istio] {
        let _ = export(&policy, format, &Placements::assumed("default"));
    }
});
