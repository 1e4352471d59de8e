//! Interoperability test of our HPACK decoder against the hpack-test-case
//! stories (http2jp/hpack-test-case format): header blocks produced by other
//! implementations' encoders, each story sharing one compression context.
//!
//! Directory: `$HPACK_TEST_CASES`, else `shared/testdata/hpack-test-case`
//! next to the workspace root.

use std::path::{Path, PathBuf};
use std::time::Instant;

use monitor_agent::protocol::http2::hpack::Decoder;
use serde_json::Value;

struct Case {
    seqno: u64,
    header_table_size: Option<usize>,
    wire: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Story {
    path: PathBuf,
    cases: Vec<Case>,
}

type Field = (Option<Vec<u8>>, Option<Vec<u8>>);

fn data_dir() -> PathBuf {
    match std::env::var_os("HPACK_TEST_CASES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/hpack-test-case"),
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A story is a JSON object whose `cases` all have a hex `wire`; anything else
/// (e.g. `raw-data` stories, which are encoder input) is `None`.
fn parse_story(path: &Path) -> Option<Story> {
    let text = std::fs::read_to_string(path).ok()?;
    let json: Value = serde_json::from_str(&text).ok()?;
    let cases = json.get("cases")?.as_array()?;
    if cases.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(cases.len());
    for (i, c) in cases.iter().enumerate() {
        let wire = unhex(c.get("wire")?.as_str()?)
            .unwrap_or_else(|| panic!("{}: case {i}: bad hex in wire", path.display()));
        let headers = c
            .get("headers")?
            .as_array()?
            .iter()
            .flat_map(|h| h.as_object().into_iter().flatten())
            .map(|(n, v)| {
                let v = v
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: non-string value", path.display()));
                (n.as_bytes().to_vec(), v.as_bytes().to_vec())
            })
            .collect();
        out.push(Case {
            seqno: c.get("seqno").and_then(Value::as_u64).unwrap_or(i as u64),
            header_table_size: c
                .get("header_table_size")
                .and_then(Value::as_u64)
                .map(|n| n as usize),
            wire,
            headers,
        });
    }
    Some(Story {
        path: path.to_path_buf(),
        cases: out,
    })
}

fn load_stories() -> Vec<Story> {
    let dir = data_dir();
    assert!(
        dir.is_dir(),
        "hpack-test-case directory not found: {} (set HPACK_TEST_CASES)",
        dir.display()
    );
    let mut files = Vec::new();
    walk(&dir, &mut files);
    files.sort();
    let stories: Vec<Story> = files.iter().filter_map(|p| parse_story(p)).collect();
    assert!(
        !stories.is_empty(),
        "no hpack-test-case story files (with `cases[].wire`) under {}",
        dir.display()
    );
    println!(
        "{}: {} story files of {} JSON files",
        dir.display(),
        stories.len(),
        files.len()
    );
    stories
}

fn decode(d: &mut Decoder, case: &Case) -> Result<Vec<Field>, String> {
    if let Some(n) = case.header_table_size {
        d.set_max_allowed(n);
    }
    let mut fields = Vec::with_capacity(case.headers.len());
    d.decode(&case.wire, &mut |n, v| {
        fields.push((n.map(<[u8]>::to_vec), v.map(<[u8]>::to_vec)));
    })
    .map_err(|e| e.to_string())?;
    Ok(fields)
}

fn show(fields: &[(Vec<u8>, Vec<u8>)]) -> String {
    fields
        .iter()
        .map(|(n, v)| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn stories_decode_exactly() {
    let stories = load_stories();
    let mut failures = Vec::new();
    let mut cases_ok = 0usize;
    let mut stories_ok = 0usize;
    for story in &stories {
        let mut d = Decoder::new();
        let mut story_ok = true;
        for case in &story.cases {
            let got = decode(&mut d, case).and_then(|fields| {
                fields
                    .into_iter()
                    .map(|(n, v)| Ok((n.ok_or("unknown name")?, v.ok_or("unknown value")?)))
                    .collect::<Result<Vec<_>, String>>()
            });
            match got {
                Ok(got) if got == case.headers => cases_ok += 1,
                Ok(got) => {
                    story_ok = false;
                    failures.push(format!(
                        "{} seqno {}: got [{}], want [{}]",
                        story.path.display(),
                        case.seqno,
                        show(&got),
                        show(&case.headers)
                    ));
                }
                Err(e) => {
                    story_ok = false;
                    failures.push(format!(
                        "{} seqno {}: {e}",
                        story.path.display(),
                        case.seqno
                    ));
                }
            }
        }
        stories_ok += usize::from(story_ok);
    }
    println!(
        "exact: {stories_ok}/{} stories, {cases_ok} cases passed, {} failed",
        stories.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Attaching mid-story (second half only): every field is the truth or
/// unknown, never wrong, and static-table and literal fields are recovered.
#[test]
fn stories_decode_from_the_middle_never_wrong() {
    let stories = load_stories();
    let mut failures = Vec::new();
    let (mut total, mut recovered, mut cases) = (0usize, 0usize, 0usize);
    for story in &stories {
        let start = story.cases.len() / 2;
        let mut d = Decoder::attached();
        for case in &story.cases[start..] {
            cases += 1;
            let fields = match decode(&mut d, case) {
                Ok(f) => f,
                Err(e) => {
                    failures.push(format!(
                        "{} seqno {}: {e}",
                        story.path.display(),
                        case.seqno
                    ));
                    continue;
                }
            };
            if fields.len() != case.headers.len() {
                failures.push(format!(
                    "{} seqno {}: {} fields, want {}",
                    story.path.display(),
                    case.seqno,
                    fields.len(),
                    case.headers.len()
                ));
                continue;
            }
            for ((n, v), (tn, tv)) in fields.iter().zip(&case.headers) {
                total += 1;
                let wrong =
                    n.as_ref().is_some_and(|n| n != tn) || v.as_ref().is_some_and(|v| v != tv);
                if wrong {
                    failures.push(format!(
                        "{} seqno {}: wrong field {:?}: {:?}, want {}: {}",
                        story.path.display(),
                        case.seqno,
                        n.as_deref().map(String::from_utf8_lossy),
                        v.as_deref().map(String::from_utf8_lossy),
                        String::from_utf8_lossy(tn),
                        String::from_utf8_lossy(tv)
                    ));
                }
                recovered += usize::from(n.is_some() && v.is_some());
            }
        }
    }
    println!(
        "attached mid-story: {} stories, {cases} cases, {recovered}/{total} fields fully recovered ({:.1}%)",
        stories.len(),
        100.0 * recovered as f64 / total.max(1) as f64
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(recovered > 0, "no field recovered mid-story");
}

/// Rough decode throughput over every story block (run with `--ignored`).
#[test]
#[ignore = "a measurement, not a check: run with --ignored"]
fn throughput() {
    let stories = load_stories();
    let blocks: usize = stories.iter().map(|s| s.cases.len()).sum();
    let octets: usize = stories
        .iter()
        .flat_map(|s| &s.cases)
        .map(|c| c.wire.len())
        .sum();
    let rounds = 20;
    let mut fields = 0usize;
    let t = Instant::now();
    for _ in 0..rounds {
        for story in &stories {
            let mut d = Decoder::new();
            for case in &story.cases {
                if let Some(n) = case.header_table_size {
                    d.set_max_allowed(n);
                }
                d.decode(&case.wire, &mut |n, v| {
                    fields += usize::from(n.is_some()) + v.map_or(0, <[u8]>::len);
                })
                .unwrap();
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} blocks ({} KiB wire) x {rounds}: {:.0} ns/block, {:.2}M blocks/s, {:.0} MB/s of wire ({fields})",
        blocks,
        octets / 1024,
        secs * 1e9 / (blocks * rounds) as f64,
        (blocks * rounds) as f64 / secs / 1e6,
        (octets * rounds) as f64 / secs / 1e6
    );
}
