//! `cdcview explain`: loads view declarations as `serve` will and prints
//! what each compiles to, or where and why a file is refused.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cdcview_sql::{Catalog, SqlError};

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// `.sql` files, or folders whose `.sql` files load in name order.
    #[arg(env = "CDCVIEW_VIEWS", default_value = "views", value_delimiter = ',')]
    pub paths: Vec<PathBuf>,
    /// Print only this source or view.
    #[arg(long)]
    pub view: Option<String>,
}

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let mut catalog = Catalog::new();
    for file in sql_files(&args.paths)? {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        catalog.load(&text).map_err(|e| anyhow::anyhow!("{}", located(&file, &text, &e)))?;
    }
    let relations: Vec<_> = catalog.relations().iter().filter(|r| args.view.as_ref().is_none_or(|v| *v == r.name)).collect();
    if let Some(name) = &args.view {
        anyhow::ensure!(!relations.is_empty(), "no source or view named {name} in {}", paths_text(&args.paths));
    }
    for (i, relation) in relations.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", relation.explain());
    }
    Ok(())
}

/// The `.sql` files of `paths`, folders expanded in name order.
pub fn sql_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading the folder {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .collect();
            found.sort();
            anyhow::ensure!(!found.is_empty(), "no .sql files in {}", path.display());
            files.extend(found);
        } else {
            anyhow::ensure!(path.exists(), "{} does not exist (give a .sql file or a folder of them)", path.display());
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn paths_text(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// `FILE:LINE:COLUMN: message`, then the line with a caret under the column.
pub fn located(file: &Path, text: &str, e: &SqlError) -> String {
    let mut out = format!("{}:{}:{}: {}", file.display(), e.line, e.column, e.message);
    if let Some(line) = text.lines().nth((e.line as usize).saturating_sub(1)).filter(|_| e.line > 0) {
        out.push_str(&format!("\n    {line}\n    {}^", " ".repeat((e.column as usize).saturating_sub(1))));
    }
    out
}
