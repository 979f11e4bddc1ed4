//! Reading a scenario's files from disk, before any run: the workflow file its `[workflow]`
//! names, resolved against the scenario's directory. The one place evsim's commands and tests
//! read them, so that every entry point resolves a path the same way. Nothing here runs during
//! a simulated run.

use evsim_model::scenario::{Scenario, ScenarioError, beside, line_col};

/// Parse scenario text read from `file`, reading the workflow file it names from disk.
pub fn parse_scenario(file: &str, source: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse_with(file, source, &|written| read_beside(file, written))
}

/// The file `written` names beside the scenario file `scenario_file`: its name for errors and
/// its text.
pub fn read_beside(scenario_file: &str, written: &str) -> Result<(String, String), String> {
    let path = beside(scenario_file, written);
    let name = path.display().to_string();
    let bytes = std::fs::read(&path).map_err(|e| format!("{name}: {e}"))?;
    String::from_utf8(bytes).map(|text| (name.clone(), text)).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
        let (line, column) = line_col(&text, valid);
        format!("{name}:{line}:{column}: this byte is not UTF-8 (byte {valid} of the file)")
    })
}
