//! Reports as a person sees them: the HTML page opened in headless Chromium (Debian's package)
//! and screenshotted, and every Mermaid diagram evsim writes handed to Mermaid's own parser and
//! renderer in that browser.
//!
//! Needs `chromium` (`apt-get install chromium`) and Mermaid's bundle
//! (`scripts/fetch-mermaid.py`); `scripts/test.sh` installs both. Without them these tests fail,
//! saying how to get them; `EVSIM_SKIP_BROWSER=1` skips them explicitly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    if std::env::var_os("EVSIM_SKIP_BROWSER").is_some() {
        eprintln!("EVSIM_SKIP_BROWSER is set: skipping a browser test");
        return None;
    }
    let found = std::env::var_os("EVSIM_CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from))
        .find(|p| p.is_file());
    Some(found.unwrap_or_else(|| {
        panic!("chromium not found: `apt-get install chromium` (or set EVSIM_CHROMIUM), or set EVSIM_SKIP_BROWSER=1")
    }))
}

fn mermaid_js() -> PathBuf {
    let p = std::env::var_os("EVSIM_MERMAID_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::root().join("target/test-tools/mermaid/mermaid.min.js"));
    assert!(p.is_file(), "{} not found: run scripts/fetch-mermaid.py (or set EVSIM_MERMAID_JS)", p.display());
    p
}

/// Headless Chromium as a person's browser would open a local file, with nothing reaching
/// out to the network.
fn browser(exe: &Path, profile: &Path) -> Command {
    let mut c = Command::new(exe);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--allow-file-access-from-files",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("evsim-browser-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The reports the tests open: a run with a lost-write counterexample (faults, elections) and
/// one with a coupon-once counterexample.
fn reports() -> Vec<(String, evsim_reports::scenario::ScenarioReport)> {
    ["order-failover-acks1", "coupon-no-dedup", "order-listener-errors", "payment-compensation-rollback"]
        .into_iter()
        .map(|name| {
            let s = common::scenario(name);
            let o = evsim_sim::run_scenario(&s, s.run.seed);
            (name.to_string(), evsim_reports::scenario::report(&s, &format!("scenarios/{name}.toml"), &o))
        })
        .collect()
}

#[test]
fn the_html_report_renders_its_charts_in_headless_chromium() {
    let Some(exe) = chromium() else { return };
    let dir = temp_dir("page");
    let (_, report) = reports().into_iter().next().unwrap();
    let json = serde_json::to_value(&report.summary).unwrap();
    evsim_reports::page::write(&dir, &report.page("evsim report"), &json).unwrap();
    let shot = common::root().join("target/report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let o = browser(&exe, &dir.join("profile"))
        .arg("--window-size=1100,2600")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", dir.join("index.html").display()))
        .output()
        .expect("chromium runs");
    assert!(shot.is_file(), "no screenshot: {}", String::from_utf8_lossy(&o.stderr));
    eprintln!("screenshot of the report: {}", shot.display());
    // Decode it and look for what only drawn charts put there: the lag line's colour (the first
    // series colour) and the shaded fault bands.
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    let near = |p: &[u8], c: [i32; 3]| (0..3).all(|k| (i32::from(p[k]) - c[k]).abs() <= 12);
    let line = pixels.iter().filter(|p| near(p, [0, 114, 178])).count();
    let band = pixels.iter().filter(|p| near(p, [249, 223, 223])).count();
    let white = pixels.iter().filter(|p| near(p, [255, 255, 255])).count();
    assert!(line > 500, "the lag line is not on the page ({line} pixels of its colour)");
    assert!(band > 2_000, "the fault bands are not on the page ({band} pixels)");
    assert!(white < pixels.len() * 97 / 100, "the page is nearly blank");
    // The DOM as the browser built it: every SVG parsed (no parse error page) and in place.
    let o = browser(&exe, &dir.join("profile"))
        .arg("--dump-dom")
        .arg(format!("file://{}", dir.join("index.html").display()))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&o.stdout);
    assert_eq!(dom.matches("<svg").count(), 2 + report.counterexamples.len(), "{}", &dom[..dom.len().min(2000)]);
    assert!(!dom.contains("parsererror"));
    std::fs::remove_dir_all(&dir).ok();
}

/// What Mermaid itself says of each diagram: parsed and rendered, or its error.
fn mermaid_verdicts(exe: &Path, diagrams: &[String]) -> Vec<serde_json::Value> {
    let dir = temp_dir("mermaid");
    let page = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><script src=\"file://{}\"></script></head><body>\
         <pre id=\"result\">PENDING</pre><script>\nconst diagrams = {};\n(async () => {{\n\
         mermaid.initialize({{ startOnLoad: false }});\nconst out = [];\n\
         for (const [i, text] of diagrams.entries()) {{\n\
           try {{ await mermaid.parse(text); const r = await mermaid.render('d' + i, text); out.push({{ ok: true, svg: r.svg.length }}); }}\n\
           catch (e) {{ out.push({{ ok: false, error: String((e && e.message) || e) }}); }}\n\
         }}\ndocument.getElementById('result').textContent = 'RESULT ' + JSON.stringify(out) + ' END';\n}})();\n</script></body></html>",
        mermaid_js().display(),
        serde_json::to_string(diagrams).unwrap()
    );
    std::fs::write(dir.join("check.html"), page).unwrap();
    let o = browser(exe, &dir.join("profile"))
        .args(["--dump-dom", "--virtual-time-budget=60000"])
        .arg(format!("file://{}", dir.join("check.html").display()))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&o.stdout);
    let start =
        dom.find("RESULT ").unwrap_or_else(|| panic!("Mermaid did not finish: {}", &dom[..dom.len().min(3000)]));
    let end = dom[start..].find(" END").expect("the end marker") + start;
    let text = dom[start + 7..end].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    std::fs::remove_dir_all(&dir).ok();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn every_counterexample_diagram_is_valid_mermaid() {
    let Some(exe) = chromium() else { return };
    let mut diagrams: Vec<String> =
        reports().iter().flat_map(|(_, r)| r.counterexamples.iter().map(|c| c.mermaid())).collect();
    assert!(diagrams.len() >= 5, "{} diagrams", diagrams.len());
    // A control: Mermaid must refuse a broken diagram, or the check proves nothing.
    diagrams.push("sequenceDiagram\n    participant P0 as a\n    P0->>: no target\n".to_string());
    let verdicts = mermaid_verdicts(&exe, &diagrams);
    assert_eq!(verdicts.len(), diagrams.len());
    let (control, ours) = verdicts.split_last().unwrap();
    assert_eq!(control["ok"], false, "Mermaid accepted a broken diagram: {control}");
    for (v, d) in ours.iter().zip(&diagrams) {
        assert_eq!(v["ok"], true, "Mermaid refused a diagram: {v}\n{d}");
        assert!(v["svg"].as_u64().unwrap() > 1_000, "{v}");
    }
}
