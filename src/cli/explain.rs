//! `cdcview explain`: loads view declarations as `serve` will and prints
//! what each compiles to, or where and why a file is refused.

use std::path::PathBuf;

use anyhow::Context;
use cdcview_sql::Catalog;

use crate::views::{located, sql_files};

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
    let specs = catalog.specs();
    for (i, relation) in relations.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", relation.explain());
        let spec = specs.iter().find(|s| s.name == relation.name);
        if let Some(root_key) = spec.filter(|s| s.materialized).and_then(|s| cdcview_engine::dataflow::keyed_star_root_key(&specs, s)) {
            println!("  -- keyed: each changed key's row is computed from the star's inputs as they are now (root key columns {root_key:?})");
        }
    }
    Ok(())
}

fn paths_text(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
