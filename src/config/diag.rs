//! Located diagnostics: every config problem carries `FILE:LINE:COL`, like a compiler's.
//!
//! Loading never stops at the first problem: each check pushes into a [`Diagnostics`] list and
//! carries on, so an SRE fixing a config during an incident sees every mistake in one run.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, with the place it was found. `line` and `col` are 1-based; `col` counts characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.col, sev, self.message
        )
    }
}

/// The text of one config file, kept to turn byte offsets into line and column.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as the user should see it (as given, joined to the main file's directory).
    pub name: Arc<str>,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(name: impl Into<Arc<str>>, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// 1-based line and character column of a byte offset.
    pub fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, col)
    }
}

/// Every diagnostic of one load, in the order found.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, file: &SourceFile, span: Range<usize>, sev: Severity, msg: String) {
        let (line, col) = file.locate(span.start);
        self.items.push(Diagnostic {
            file: file.name.clone(),
            line,
            col,
            severity: sev,
            message: msg,
        });
    }

    /// A problem that has no better place than the start of a file (it cannot be read, say).
    pub fn push_file(&mut self, file: &str, sev: Severity, msg: String) {
        self.items.push(Diagnostic {
            file: file.into(),
            line: 1,
            col: 1,
            severity: sev,
            message: msg,
        });
    }

    /// Order by file (in `file_order`, the order they were read), then line and column, the
    /// way a reader walks through the files. Stable: problems at one place keep their order.
    pub fn sort(&mut self, file_order: &[&str]) {
        self.items.sort_by_key(|d| {
            let rank = file_order
                .iter()
                .position(|f| **f == *d.file)
                .unwrap_or(usize::MAX);
            (rank, d.line, d.col)
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A file plus the list its problems go into: what every validation function takes.
pub struct Reporter<'a> {
    pub file: &'a SourceFile,
    pub diags: &'a mut Diagnostics,
}

impl Reporter<'_> {
    pub fn error(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.diags
            .push(self.file, span, Severity::Error, msg.into());
    }

    pub fn warn(&mut self, span: Range<usize>, msg: impl Into<String>) {
        self.diags
            .push(self.file, span, Severity::Warning, msg.into());
    }

    pub fn reborrow(&mut self) -> Reporter<'_> {
        Reporter {
            file: self.file,
            diags: self.diags,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_counts_lines_and_characters() {
        let f = SourceFile::new("x.toml", "a = 1\nbé = \"z\"\n".to_string());
        assert_eq!(f.locate(0), (1, 1));
        assert_eq!(f.locate(6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(f.locate(9), (2, 3));
        assert_eq!(f.locate(1000), (3, 1));
    }
}
