//! The views posted at run time, kept in the state folder so that a restart
//! serves them again.

use std::path::PathBuf;

/// Posted views' statements, in the order they were posted, and the file
/// that keeps them (`posted_views.sql` in the state folder; none without one).
#[derive(Debug, Default)]
pub struct PostedViews {
    file: Option<PathBuf>,
    views: Vec<(String, String)>,
}

const SEPARATOR: &str = "\n-- cdcview: next posted view\n";

impl PostedViews {
    pub const FILE: &'static str = "posted_views.sql";

    /// The views posted in earlier runs, from `dir`'s file.
    pub fn load(dir: Option<PathBuf>) -> std::io::Result<Self> {
        let file = dir.map(|d| d.join(Self::FILE));
        let text = match &file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e),
            },
            None => String::new(),
        };
        let views = text
            .split(SEPARATOR)
            .filter(|s| !s.trim().is_empty())
            .filter_map(|sql| {
                let name = cdcview_sql::Catalog::statements(sql).ok()?.into_iter().flatten().next()?.0;
                Some((name, sql.to_string()))
            })
            .collect();
        Ok(PostedViews { file, views })
    }

    pub fn views(&self) -> &[(String, String)] {
        &self.views
    }

    pub fn len(&self) -> usize {
        self.views.len()
    }

    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.views.iter().any(|(n, _)| n == name)
    }

    pub fn add(&mut self, name: &str, sql: &str) {
        self.views.push((name.to_string(), sql.trim().to_string()));
        self.save();
    }

    pub fn remove(&mut self, name: &str) {
        self.views.retain(|(n, _)| n != name);
        self.save();
    }

    /// Writes the file anew (temporary file, then rename). A failure is
    /// logged: the view is served, and lost only at the next restart.
    fn save(&self) {
        let Some(path) = &self.file else { return };
        let text: Vec<&str> = self.views.iter().map(|(_, sql)| sql.as_str()).collect();
        let tmp = path.with_extension("sql.tmp");
        let written = std::fs::write(&tmp, text.join(SEPARATOR)).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!(error = %e, path = %path.display(), "cannot keep the posted views; they will be gone after a restart");
        }
    }
}
