//! A report as files: a self-contained HTML page (inline SVG, no script, no network fetch), a
//! Markdown summary for a pull request (charts as files beside it, counterexamples as Mermaid
//! blocks), a JSON summary, and each chart as SVG and PNG.

use crate::charts::Chart;
use crate::counterexample::{Counterexample, xml};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A table of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// What a report page shows, whatever produced it (a run, a sweep).
#[derive(Clone, Debug)]
pub struct Page {
    pub title: String,
    /// Paragraphs under the title.
    pub lead: Vec<String>,
    pub passed: bool,
    /// One sentence: the verdict.
    pub verdict: String,
    pub tables: Vec<Table>,
    pub charts: Vec<Chart>,
    pub counterexamples: Vec<Counterexample>,
    /// The command that reproduces the report.
    pub replay: String,
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
table{border-collapse:collapse;margin:1em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f3f5f8}.verdict{padding:.7em 1em;border-radius:4px;font-weight:bold}\
.held{background:#e7f5ea;border:1px solid #5a9e6a}.violated{background:#fbeaea;border:1px solid #c0504d}\
figure{margin:1.5em 0}figcaption{font-size:1em;margin:.4em 0}.finding{font-weight:bold}\
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.82em}svg{max-width:100%;height:auto}\
code{background:#f6f8fa;padding:0 .2em}.seq{overflow-x:auto}";

/// The page as HTML; `svgs` are the charts' SVG documents, in chart order.
pub fn html(page: &Page, svgs: &[String]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        xml(&page.title),
        xml(&page.title)
    );
    for p in &page.lead {
        let _ = writeln!(h, "<p>{}</p>", xml(p));
    }
    let class = if page.passed { "held" } else { "violated" };
    let _ = writeln!(h, "<p class=\"verdict {class}\">{}</p>", xml(&page.verdict));
    let _ = writeln!(h, "<p>Reproduce: <code>{}</code></p>", xml(&page.replay));
    if !page.charts.is_empty() {
        h.push_str("<h2>Charts</h2>\n");
    }
    for (chart, svg) in page.charts.iter().zip(svgs) {
        let _ = writeln!(
            h,
            "<figure id=\"{}\">\n{}\n<figcaption><span class=\"finding\">{}</span></figcaption>\n</figure>",
            xml(&chart.id),
            strip_xml_declaration(svg),
            xml(&chart.finding)
        );
    }
    for t in &page.tables {
        let _ = writeln!(h, "<h2>{}</h2>\n<table>\n<tr>", xml(&t.caption));
        for c in &t.header {
            let _ = write!(h, "<th>{}</th>", xml(c));
        }
        h.push_str("</tr>\n");
        for r in &t.rows {
            h.push_str("<tr>");
            for c in r {
                let _ = write!(h, "<td>{}</td>", xml(c));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }
    if !page.counterexamples.is_empty() {
        h.push_str("<h2>Counterexamples</h2>\n");
    }
    for c in &page.counterexamples {
        let _ = writeln!(
            h,
            "<h3 id=\"ce-{}\">{} {}</h3>\n<p>{}</p>\n<p>{}</p>\n<div class=\"seq\">{}</div>",
            xml(&c.invariant),
            xml(&c.invariant),
            if c.claimed { "(claimed) violated" } else { "(informational) violated" },
            xml(&story_line(c)),
            xml(&c.message),
            c.svg()
        );
        let _ = writeln!(
            h,
            "<details><summary>Text timeline ({} entries)</summary>\n<pre>{}</pre></details>",
            c.timeline.len(),
            xml(&c.timeline.join("\n"))
        );
        let _ = writeln!(
            h,
            "<details><summary>Mermaid source</summary>\n<pre class=\"mermaid-source\">{}</pre></details>",
            xml(&c.mermaid())
        );
    }
    h.push_str(
        "<p><small>Written by evsim: self-contained, no scripts, nothing fetched.</small></p>\n</body>\n</html>\n",
    );
    h
}

/// Where a counterexample comes from, in words.
fn story_line(c: &Counterexample) -> String {
    let setting = c.setting.as_ref().map(|s| format!(" with {s}")).unwrap_or_default();
    let more = if c.violations > 1 {
        format!(" ({} violations in that run; this is the first)", c.violations)
    } else {
        String::new()
    };
    format!("Seed {}{setting}{more}:", c.seed)
}

fn strip_xml_declaration(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// A Markdown table cell: pipes and newlines would break the table.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The longest run of backticks in `content`.
fn backticks(content: &str) -> usize {
    content.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// A code fence longer than any run of backticks in `content`, so that nothing in it closes
/// the block.
fn fence(content: &str) -> String {
    "`".repeat(backticks(content).max(2) + 1)
}

/// The page as Markdown, for a pull request: charts linked from `charts/`, counterexamples as
/// Mermaid blocks (GitHub draws them) with the text timeline.
pub fn markdown(page: &Page) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# {}\n", page.title);
    for p in &page.lead {
        let _ = writeln!(m, "{p}\n");
    }
    let mark = if page.passed { "✅" } else { "❌" };
    let _ = writeln!(m, "**{mark} {}**\n", page.verdict);
    let f = "`".repeat(backticks(&page.replay) + 1);
    let _ = writeln!(m, "Reproduce: {f}{}{f}\n", page.replay);
    for chart in &page.charts {
        let _ =
            writeln!(m, "## {}\n\n![{}](charts/{}.svg)\n\n**{}**\n", chart.title, chart.title, chart.id, chart.finding);
    }
    for t in &page.tables {
        let _ = writeln!(m, "## {}\n", t.caption);
        let _ = writeln!(m, "| {} |", t.header.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
        let _ = writeln!(m, "|{}", "---|".repeat(t.header.len()));
        for r in &t.rows {
            let _ = writeln!(m, "| {} |", r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
        }
        m.push('\n');
    }
    if !page.counterexamples.is_empty() {
        m.push_str("## Counterexamples\n\n");
    }
    for c in &page.counterexamples {
        let (diagram, timeline) = (c.mermaid(), c.timeline.join("\n"));
        let (f1, f2) = (fence(&diagram), fence(&timeline));
        let _ = writeln!(
            m,
            "### {} {}\n\n{} {}\n\n{f1}mermaid\n{diagram}{f1}\n\n<details><summary>Text timeline ({} entries)</summary>\n\n{f2}text\n{timeline}\n{f2}\n\n</details>\n",
            c.invariant,
            if c.claimed { "(claimed) violated" } else { "(informational) violated" },
            story_line(c),
            c.message,
            c.timeline.len(),
        );
    }
    m
}

/// Write the report into `dir`: `index.html`, `summary.md`, `summary.json` and
/// `charts/<id>.svg` and `.png`. Returns the files written.
pub fn write(dir: &Path, page: &Page, json: &serde_json::Value) -> Result<Vec<PathBuf>, String> {
    let charts_dir = dir.join("charts");
    std::fs::create_dir_all(&charts_dir).map_err(|e| format!("cannot create {}: {e}", charts_dir.display()))?;
    let mut written = Vec::new();
    let mut put = |path: PathBuf, bytes: &[u8]| -> Result<(), String> {
        std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
        Ok(())
    };
    let mut svgs = Vec::new();
    for chart in &page.charts {
        let svg = chart.svg().map_err(|e| format!("chart {}: {e}", chart.id))?;
        put(charts_dir.join(format!("{}.svg", chart.id)), svg.as_bytes())?;
        svgs.push(svg);
    }
    put(dir.join("index.html"), html(page, &svgs).as_bytes())?;
    put(dir.join("summary.md"), markdown(page).as_bytes())?;
    let text = serde_json::to_string_pretty(json).map_err(|e| format!("cannot render the JSON summary: {e}"))?;
    put(dir.join("summary.json"), format!("{text}\n").as_bytes())?;
    for chart in &page.charts {
        let path = charts_dir.join(format!("{}.png", chart.id));
        chart.png(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_fences_outrun_the_backticks_they_hold() {
        assert_eq!(fence("plain"), "```");
        assert_eq!(fence("a ```` b"), "`````");
        assert_eq!(backticks("x `y` ``z``"), 2);
    }
}
