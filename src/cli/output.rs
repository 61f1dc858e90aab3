//! Printing results as a table, JSON or tab-separated text.
//!
//! JSON output uses the service's PascalCase member names and is stable for
//! scripts. A broken pipe (e.g. `| head`) is not an error.

use std::io::{self, Write};

use serde_json::Value;

use super::{CliResult, OutputFormat};

/// A record: ordered (column, value) pairs. The column names are the JSON keys.
pub type Record = Vec<(&'static str, String)>;

/// Prints command results in the chosen format.
pub struct Printer {
    format: OutputFormat,
}

impl Printer {
    /// A printer for `format`.
    pub fn new(format: OutputFormat) -> Self {
        Self { format }
    }

    /// The selected format.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// Prints a list of records. `json` is the complete JSON document to print
    /// in JSON mode (so lists keep their service shape, e.g. `{"Environments": [...]}`).
    pub fn records(&self, records: &[Record], json: Value) -> CliResult {
        match self.format {
            OutputFormat::Json => self.json(&json),
            OutputFormat::Text => {
                let mut s = String::new();
                for r in records {
                    let line: Vec<&str> = r.iter().map(|(_, v)| v.as_str()).collect();
                    s.push_str(&line.join("\t"));
                    s.push('\n');
                }
                write_stdout(&s)
            }
            OutputFormat::Table => {
                if records.is_empty() {
                    return write_stdout("(none)\n");
                }
                write_stdout(&table(records))
            }
        }
    }

    /// Prints one record: as `Key: value` lines in table mode.
    pub fn record(&self, record: &Record, json: Value) -> CliResult {
        match self.format {
            OutputFormat::Json => self.json(&json),
            OutputFormat::Text => {
                let line: Vec<&str> = record.iter().map(|(_, v)| v.as_str()).collect();
                write_stdout(&format!("{}\n", line.join("\t")))
            }
            OutputFormat::Table => {
                let width = record.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
                let mut s = String::new();
                for (k, v) in record {
                    s.push_str(&format!("{k:<width$}  {v}\n"));
                }
                write_stdout(&s)
            }
        }
    }

    /// Prints a JSON document (pretty, newline-terminated).
    pub fn json(&self, value: &Value) -> CliResult {
        let mut s = serde_json::to_string_pretty(value)
            .map_err(|e| super::CliError::new(format!("cannot render JSON: {e}")))?;
        s.push('\n');
        write_stdout(&s)
    }
}

/// Renders aligned columns with a header row.
fn table(records: &[Record]) -> String {
    let cols = records[0].len();
    let mut widths: Vec<usize> = records[0].iter().map(|(k, _)| header(k).len()).collect();
    for r in records {
        for (i, (_, v)) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(v.chars().count());
        }
    }
    let mut s = String::new();
    let head: Vec<String> = records[0]
        .iter()
        .enumerate()
        .map(|(i, (k, _))| format!("{:<w$}", header(k), w = widths[i]))
        .collect();
    s.push_str(head.join("  ").trim_end());
    s.push('\n');
    for r in records {
        let row: Vec<String> = r
            .iter()
            .enumerate()
            .take(cols)
            .map(|(i, (_, v))| format!("{:<w$}", v, w = widths[i]))
            .collect();
        s.push_str(row.join("  ").trim_end());
        s.push('\n');
    }
    s
}

/// `EnvironmentId` → `ENVIRONMENT ID`.
fn header(key: &str) -> String {
    let mut out = String::new();
    for (i, c) in key.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Writes to stdout; a closed pipe ends the program quietly with status 0.
pub fn write_stdout(s: &str) -> CliResult {
    let mut out = io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(e.into()),
    }
}

/// A status line for people, on stderr (never mixed into stdout).
pub fn status_line(s: &str) {
    let _ = writeln!(io::stderr(), "{s}");
}

/// Text from the service for a terminal, with control characters escaped
/// (`\u{1b}`...), so that it cannot move the cursor or retitle the window.
pub fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_splits_pascal_case() {
        assert_eq!(header("EnvironmentId"), "ENVIRONMENT ID");
        assert_eq!(header("Status"), "STATUS");
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec![
                ("EnvironmentId", "a".to_string()),
                ("Status", "RUNNING".to_string()),
            ],
            vec![
                ("EnvironmentId", "bbbbbbbbbbbbbbbbb".to_string()),
                ("Status", "X".to_string()),
            ],
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "ENVIRONMENT ID     STATUS");
        assert_eq!(lines[1], "a                  RUNNING");
        assert_eq!(lines[2], "bbbbbbbbbbbbbbbbb  X");
    }
}
