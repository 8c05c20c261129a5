//! The declared sources and views, in the order they were declared.
//!
//! A source is a Kafka topic read as a table, declared the way RisingWave
//! and Feldera users declare theirs (and parsed by the same parser as the
//! views):
//!
//! ```sql
//! CREATE TABLE users (user_id BIGINT PRIMARY KEY, name TEXT NOT NULL, ...)
//! WITH (connector = 'kafka', topic = 'mysql.shop.users', format = 'debezium-json');
//! ```
//!
//! `format` is `debezium-json` (with or without schemas), `debezium-avro`
//! (Confluent framing, schema registry) or `json` (plain JSON events: with
//! a PRIMARY KEY, a record replaces the row of its key; without one, every
//! record is a row of its own, as the topic's log is). Views are `CREATE VIEW` (planned,
//! read by other views, not served) and `CREATE MATERIALIZED VIEW`
//! (maintained, served, written to PostgreSQL).

use sqlparser::ast::{self, ColumnOption, Expr as AstExpr, Spanned, SqlOption, Statement, TableConstraint, Value};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Span, Token};

use cdcview_engine::dataflow::RelationSpec;
use cdcview_engine::plan::{Column, Plan, RelationInfo};

use crate::error::{Result, SqlError};
use crate::planner::{object_name, plan_query, Relations};
use crate::types::sql_type;

/// How a source topic's records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Debezium change events as JSON, with or without the schema envelope.
    DebeziumJson,
    /// Debezium change events in Avro, Confluent framing.
    DebeziumAvro,
    /// Plain JSON objects, one row each (an event topic): a record with a
    /// key seen before replaces that row.
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub topic: String,
    pub format: Format,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Source(Source),
    View { plan: Plan, materialized: bool },
}

/// A source or a view.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub name: String,
    pub columns: Vec<Column>,
    /// Column positions with at most one row each; `None` when the plan
    /// shows none (the view's rows then get an internal row id).
    pub key: Option<Vec<usize>>,
    pub kind: Kind,
    /// The statement as written.
    pub sql: String,
}

impl Relation {
    pub fn is_materialized(&self) -> bool {
        matches!(self.kind, Kind::View { materialized: true, .. })
    }

    /// `EXPLAIN`: the columns, the key and the plan.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let kind = match &self.kind {
            Kind::Source(s) => format!("source (topic {}, {:?})", s.topic, s.format),
            Kind::View { materialized: true, .. } => "materialized view".into(),
            Kind::View { .. } => "view".into(),
        };
        out.push_str(&format!("{} ({kind})\n", self.name));
        for c in &self.columns {
            out.push_str(&format!("  {} {}{}\n", c.name, c.ty, if c.nullable { "" } else { " NOT NULL" }));
        }
        let key = match &self.key {
            Some(key) => key.iter().map(|&k| self.columns[k].name.as_str()).collect::<Vec<_>>().join(", "),
            None => "none: rows get an internal row id".into(),
        };
        out.push_str(&format!("key: {key}\n"));
        if let Kind::View { plan, .. } = &self.kind {
            out.push_str("plan:\n");
            for line in plan.to_string().lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        out
    }
}

/// The statements of `sql`, each with the position of its first token.
fn parse_statements(sql: &str) -> Result<Vec<(Statement, Span)>> {
    let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).map_err(SqlError::from_parser)?;
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        let next = parser.peek_token();
        if next.token == Token::EOF {
            return Ok(statements);
        }
        let statement = parser.parse_statement().map_err(SqlError::from_parser)?;
        statements.push((statement, next.span));
        let after = parser.peek_token();
        if !matches!(after.token, Token::SemiColon | Token::EOF) {
            return Err(SqlError::at(after.span, format!("expected ; after the statement, found {}", after.token)));
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    relations: Vec<Relation>,
}

impl Relations for Catalog {
    fn columns(&self, name: &str) -> Option<Vec<Column>> {
        self.get(name).map(|r| r.columns.clone())
    }
}

impl RelationInfo for Catalog {
    fn key(&self, name: &str) -> Option<Vec<usize>> {
        self.get(name).and_then(|r| r.key.clone())
    }

    fn row_numbers(&self, name: &str) -> Vec<(usize, Vec<usize>)> {
        match self.get(name).map(|r| &r.kind) {
            Some(Kind::View { plan, .. }) => plan.row_numbers(self),
            _ => Vec::new(),
        }
    }
}

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, name: &str) -> Option<&Relation> {
        self.relations.iter().find(|r| r.name == name)
    }

    pub fn relations(&self) -> &[Relation] {
        &self.relations
    }

    /// What the engine runs: every source and view, in declaration order.
    pub fn specs(&self) -> Vec<RelationSpec> {
        self.relations
            .iter()
            .map(|r| {
                let (plan, materialized) = match &r.kind {
                    Kind::Source(_) => (None, false),
                    Kind::View { plan, materialized } => (Some(plan.clone()), *materialized),
                };
                RelationSpec { name: r.name.clone(), key: r.key.clone(), plan, materialized }
            })
            .collect()
    }

    /// What each statement of `sql` declares, without declaring it: the
    /// name, and whether it is a `CREATE MATERIALIZED VIEW` (`None` for a
    /// statement that declares nothing).
    pub fn statements(sql: &str) -> Result<Vec<Option<(String, bool)>>> {
        parse_statements(sql)?
            .iter()
            .map(|(statement, _)| {
                Ok(match statement {
                    Statement::CreateView(v) => Some((object_name(&v.name)?, v.materialized)),
                    Statement::CreateTable(t) => Some((object_name(&t.name)?, false)),
                    _ => None,
                })
            })
            .collect()
    }

    /// Loads every statement of `sql`, all or nothing: on an error the
    /// catalog is as it was. Returns the names declared.
    pub fn load(&mut self, sql: &str) -> Result<Vec<String>> {
        let statements = parse_statements(sql)?;
        let mut next = self.clone();
        let mut added = Vec::new();
        for (statement, start) in &statements {
            let relation = next.declare(statement, *start)?;
            added.push(relation.name.clone());
            next.relations.push(relation);
        }
        *self = next;
        Ok(added)
    }

    fn declare(&self, statement: &Statement, start: Span) -> Result<Relation> {
        // Not every statement knows where it is; its first token does.
        let span = Some(statement.span()).filter(|s| s.start.line > 0).unwrap_or(start);
        let relation = match statement {
            Statement::CreateTable(t) => self.source(t, span)?,
            Statement::CreateView(v) => self.view(v, span)?,
            other => {
                let first = other.to_string().split_whitespace().take(3).collect::<Vec<_>>().join(" ");
                return Err(SqlError::unsupported(
                    span,
                    format!(
                        "the statement {first} ... (CREATE TABLE ... WITH (connector = 'kafka', ...), CREATE VIEW and CREATE MATERIALIZED VIEW are)"
                    ),
                ));
            }
        };
        if self.get(&relation.name).is_some() {
            return Err(SqlError::at(span, format!("{} is declared twice", relation.name)));
        }
        Ok(relation)
    }

    fn source(&self, t: &ast::CreateTable, span: Span) -> Result<Relation> {
        let name = object_name(&t.name)?;
        if t.query.is_some() || t.like.is_some() || t.clone.is_some() {
            return Err(SqlError::unsupported(span, "CREATE TABLE ... AS, LIKE or CLONE (a source declares its columns)"));
        }
        let mut columns = Vec::new();
        let mut key = Vec::new();
        for (i, c) in t.columns.iter().enumerate() {
            let ty = sql_type(&c.data_type, c.name.span)?;
            let mut nullable = true;
            for option in &c.options {
                match &option.option {
                    ColumnOption::NotNull => nullable = false,
                    ColumnOption::Null => {}
                    ColumnOption::PrimaryKey(_) => {
                        key.push(i);
                        nullable = false;
                    }
                    other => return Err(SqlError::unsupported(c.name.span, format!("the column option {other}"))),
                }
            }
            columns.push(Column { name: c.name.value.to_lowercase(), ty, nullable });
        }
        for constraint in &t.constraints {
            match constraint {
                TableConstraint::PrimaryKey(pk) => {
                    for col in &pk.columns {
                        let col_name = col.column.expr.to_string().to_lowercase();
                        let position = columns
                            .iter()
                            .position(|c| c.name == col_name)
                            .ok_or_else(|| SqlError::at(col.column.expr.span(), format!("no column {col_name} in {name}")))?;
                        columns[position].nullable = false;
                        key.push(position);
                    }
                }
                other => return Err(SqlError::unsupported(span, format!("the constraint {other}"))),
            }
        }
        let options = match &t.table_options {
            ast::CreateTableOptions::With(options) => options,
            _ => return Err(SqlError::at(span, format!("the source {name} needs WITH (connector = 'kafka', topic = '...', format = '...')"))),
        };
        let mut topic = None;
        let mut format = None;
        for option in options {
            let SqlOption::KeyValue { key: k, value } = option else {
                return Err(SqlError::unsupported(span, format!("the option {option}")));
            };
            let k = k.to_string().to_lowercase();
            let text = match value {
                AstExpr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    _ => return Err(SqlError::at(value.span(), format!("{k} takes a quoted string"))),
                },
                AstExpr::Identifier(i) => i.value.clone(),
                _ => return Err(SqlError::at(value.span(), format!("{k} takes a quoted string"))),
            };
            match k.as_str() {
                "connector" if text == "kafka" => {}
                "connector" => return Err(SqlError::unsupported(value.span(), format!("the connector {text} (kafka is)"))),
                "topic" => topic = Some(text),
                "format" => {
                    format = Some(match text.as_str() {
                        "debezium-json" | "debezium" => Format::DebeziumJson,
                        "debezium-avro" => Format::DebeziumAvro,
                        "json" => Format::Json,
                        _ => {
                            return Err(SqlError::unsupported(value.span(), format!("the format {text} (debezium-json, debezium-avro and json are)")))
                        }
                    })
                }
                _ => return Err(SqlError::unsupported(span, format!("the option {k} (connector, topic and format are)"))),
            }
        }
        let topic = topic.ok_or_else(|| SqlError::at(span, format!("the source {name} needs a topic")))?;
        let format = format.ok_or_else(|| SqlError::at(span, format!("the source {name} needs a format")))?;
        // A change event names its row by primary key; a plain JSON event
        // without one is a row of its own, as the topic's log is.
        if key.is_empty() && format != Format::Json {
            return Err(SqlError::at(span, format!("the source {name} needs a PRIMARY KEY: its change events name rows by key")));
        }
        let key = (!key.is_empty()).then_some(key);
        Ok(Relation { name, columns, key, kind: Kind::Source(Source { topic, format }), sql: t.to_string() })
    }

    fn view(&self, v: &ast::CreateView, span: Span) -> Result<Relation> {
        let name = object_name(&v.name)?;
        if v.or_replace || v.or_alter || !v.columns.is_empty() || !matches!(v.options, ast::CreateTableOptions::None) {
            return Err(SqlError::unsupported(span, "OR REPLACE, column lists and options on a view"));
        }
        let planned = plan_query(&v.query, self)?;
        let mut columns = planned.plan.columns();
        for (c, n) in columns.iter_mut().zip(&planned.names) {
            c.name = n.clone();
        }
        let key = planned.plan.unique_keys(self).into_iter().min_by_key(|k| k.len());
        Ok(Relation { name, columns, key, kind: Kind::View { plan: planned.plan, materialized: v.materialized }, sql: v.to_string() })
    }
}
