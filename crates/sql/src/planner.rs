//! From a parsed `SELECT` to a [`Plan`]: names resolved, types checked, and
//! every construct outside the maintained subset refused with its position.

use sqlparser::ast::{
    self as ast, BinaryOperator, DuplicateTreatment, Expr as AstExpr, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments,
    GroupByExpr, JoinConstraint, JoinOperator, OrderByKind, SelectItem, SetExpr, Spanned, TableFactor, UnaryOperator, Value,
};
use sqlparser::tokenizer::Span;

use cdcview_engine::expr::{infer, AggFunc, Aggregate, BinaryOp, Expr, Func, Literal};
use cdcview_engine::plan::{Column, JoinKind, Plan, RelationInfo};
use cdcview_engine::types::SqlType;

use crate::error::{Result, SqlError};
use crate::types::sql_type;

/// What the planner needs to know of the relations a query reads: their
/// columns, and what key inference needs ([`RelationInfo`]).
pub trait Relations: RelationInfo {
    /// The columns of a source or view, by its (lower-case) name.
    fn columns(&self, name: &str) -> Option<Vec<Column>>;
}

/// A planned query: the plan and its output columns' names.
pub struct Planned {
    pub plan: Plan,
    pub names: Vec<String>,
}

/// Plans `query` over `relations`.
pub fn plan_query(query: &ast::Query, relations: &dyn Relations) -> Result<Planned> {
    Planner { relations }.query(query)
}

/// A name in scope: `qualifier.name` is column `position` of the plan.
#[derive(Clone, Debug)]
struct Name {
    qualifier: Option<String>,
    name: String,
    /// Columns the planner adds (a decorrelated subquery's value) are not
    /// found by name and not expanded by `*`.
    hidden: bool,
}

#[derive(Clone, Debug, Default)]
struct Scope {
    names: Vec<Name>,
    columns: Vec<Column>,
}

impl Scope {
    fn of(qualifier: &str, columns: Vec<Column>) -> Self {
        let names = columns.iter().map(|c| Name { qualifier: Some(qualifier.to_string()), name: c.name.clone(), hidden: false }).collect();
        Scope { names, columns }
    }

    fn join(mut self, right: Scope, kind: JoinKind) -> Self {
        self.names.extend(right.names);
        self.columns.extend(right.columns.into_iter().map(|c| Column { nullable: c.nullable || kind == JoinKind::Left, ..c }));
        self
    }

    fn push_hidden(&mut self, column: Column) -> usize {
        self.names.push(Name { qualifier: None, name: column.name.clone(), hidden: true });
        self.columns.push(column);
        self.columns.len() - 1
    }

    /// The position of `qualifier.name` (or of `name` alone), if exactly one matches.
    fn resolve(&self, qualifier: Option<&str>, name: &str, span: Span) -> Result<Option<usize>> {
        let found: Vec<usize> = (0..self.names.len())
            .filter(|&i| {
                let n = &self.names[i];
                !n.hidden && n.name == name && qualifier.is_none_or(|q| n.qualifier.as_deref() == Some(q))
            })
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => Err(SqlError::at(span, format!("the column name {name} is ambiguous: qualify it with its table"))),
        }
    }
}

/// Identifiers fold to lower case unless quoted, as in PostgreSQL.
fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

pub(crate) fn object_name(name: &ast::ObjectName) -> Result<String> {
    match name.0.as_slice() {
        [ast::ObjectNamePart::Identifier(i)] => Ok(ident(i)),
        _ => Err(SqlError::unsupported(name.span(), format!("the qualified name {name} (sources and views have one-part names)"))),
    }
}

/// How a `GROUP BY` query binds its select list: group expressions and
/// aggregates become columns of the reduce's output.
struct Grouping {
    /// The group expressions, over the input scope.
    keys: Vec<Expr>,
    aggregates: Vec<Aggregate>,
    /// The columns the aggregates read, added to the input row by a map.
    agg_inputs: Vec<Expr>,
}

struct Binder<'a> {
    scope: &'a Scope,
    grouping: Option<&'a mut Grouping>,
    /// Each decorrelated scalar subquery (by its text) and its column.
    subqueries: &'a [(String, usize)],
    /// Each window function (by its text) and its column.
    windows: &'a [(String, usize)],
}

impl Binder<'_> {
    fn plain<'b>(&'b mut self) -> Binder<'b> {
        Binder { scope: self.scope, grouping: None, subqueries: self.subqueries, windows: self.windows }
    }

    fn bind(&mut self, e: &AstExpr) -> Result<Expr> {
        if self.grouping.is_some() {
            return self.bind_grouped(e);
        }
        self.bind_node(e)
    }

    /// In a grouped query: an aggregate, a group expression, or an
    /// expression of those.
    fn bind_grouped(&mut self, e: &AstExpr) -> Result<Expr> {
        if let AstExpr::Function(f) = e {
            if let Some(func) = aggregate_func(f) {
                return self.bind_aggregate(func, f);
            }
        }
        if !contains_aggregate(e) {
            let plain = self.plain().bind_node(e)?;
            let grouping = self.grouping.as_ref().expect("grouped");
            if let Some(k) = grouping.keys.iter().position(|g| *g == plain) {
                return Ok(Expr::Column(k));
            }
            let mut cols = Vec::new();
            plain.columns(&mut cols);
            if cols.is_empty() {
                return Ok(plain);
            }
            if matches!(e, AstExpr::Identifier(_) | AstExpr::CompoundIdentifier(_)) {
                return Err(SqlError::at(e.span(), format!("the column {e} must appear in GROUP BY or be used in an aggregate")));
            }
        }
        self.bind_node(e)
    }

    fn bind_aggregate(&mut self, func: AggFunc, f: &ast::Function) -> Result<Expr> {
        let span = f.span();
        if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
            return Err(SqlError::unsupported(span, format!("{f} (aggregates over windows, FILTER, WITHIN GROUP)")));
        }
        let FunctionArguments::List(list) = &f.args else {
            return Err(SqlError::at(span, format!("{} needs arguments", f.name)));
        };
        let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
        let mut args = Vec::new();
        let mut star = false;
        for a in &list.args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => args.push(x),
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if func == AggFunc::Count => star = true,
                other => return Err(SqlError::unsupported(span, format!("the argument {other} of {}", f.name))),
            }
        }
        let mut order_by_ast = Vec::new();
        for clause in &list.clauses {
            match clause {
                FunctionArgumentClause::OrderBy(items) if func == AggFunc::StringAgg => order_by_ast.extend(items.iter()),
                other => return Err(SqlError::unsupported(span, format!("{other} in {}", f.name))),
            }
        }
        let expected = match func {
            AggFunc::StringAgg => 2,
            AggFunc::Count if star => 0,
            _ => 1,
        };
        if args.len() != expected || (star && distinct) {
            return Err(SqlError::at(span, format!("{} takes {expected} argument(s)", f.name)));
        }
        let inputs = self.scope.columns.clone();
        let mut bound_arg = None;
        let mut ty = SqlType::Int;
        if let Some(x) = args.first() {
            let arg = self.plain().bind_node(x)?;
            let arg_ty = infer(&arg, &inputs).map_err(|m| SqlError::at(x.span(), m))?;
            ty = match func {
                AggFunc::Count => SqlType::Int,
                AggFunc::Sum => match arg_ty {
                    SqlType::Int => SqlType::Decimal { scale: Some(0) },
                    t if t.is_numeric() => t,
                    t => return Err(SqlError::at(x.span(), format!("SUM of {t}"))),
                },
                AggFunc::Avg => match arg_ty {
                    SqlType::Double => SqlType::Double,
                    t if t.is_numeric() => SqlType::Decimal { scale: None },
                    t => return Err(SqlError::at(x.span(), format!("AVG of {t}"))),
                },
                AggFunc::Min | AggFunc::Max => arg_ty,
                AggFunc::StringAgg => SqlType::Text,
            };
            bound_arg = Some(self.agg_input(arg));
        }
        let separator = match (func, args.get(1)) {
            (AggFunc::StringAgg, Some(AstExpr::Value(v))) => match &v.value {
                Value::SingleQuotedString(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        };
        if func == AggFunc::StringAgg && separator.is_none() {
            return Err(SqlError::unsupported(span, "a STRING_AGG separator that is not a text literal"));
        }
        let mut order_by = Vec::new();
        for item in order_by_ast {
            let key = self.plain().bind_node(&item.expr)?;
            order_by.push((self.agg_input(key), descending(item)?));
        }
        let grouping = self.grouping.as_mut().expect("grouped");
        let aggregate = Aggregate { func, arg: bound_arg, distinct, separator, order_by, ty };
        let position = grouping.aggregates.iter().position(|a| *a == aggregate).unwrap_or_else(|| {
            grouping.aggregates.push(aggregate);
            grouping.aggregates.len() - 1
        });
        Ok(Expr::Column(grouping.keys.len() + position))
    }

    /// The position, among the aggregates' inputs, of `e`.
    fn agg_input(&mut self, e: Expr) -> usize {
        let grouping = self.grouping.as_mut().expect("grouped");
        grouping.agg_inputs.iter().position(|x| *x == e).unwrap_or_else(|| {
            grouping.agg_inputs.push(e);
            grouping.agg_inputs.len() - 1
        })
    }

    fn bind_node(&mut self, e: &AstExpr) -> Result<Expr> {
        let span = e.span();
        // In a grouped query the columns are the reduce's: typed by the caller.
        let grouped = self.grouping.is_some();
        let typed = |e: Expr, scope: &Scope| -> Result<Expr> {
            if !grouped {
                infer(&e, &scope.columns).map_err(|m| SqlError::at(span, m))?;
            }
            Ok(e)
        };
        let bound = match e {
            AstExpr::Identifier(i) => self.column(None, &ident(i), span)?,
            AstExpr::CompoundIdentifier(parts) => match parts.as_slice() {
                [q, n] => self.column(Some(&ident(q)), &ident(n), span)?,
                _ => return Err(SqlError::unsupported(span, format!("the name {e}"))),
            },
            AstExpr::Value(v) => literal(&v.value, span)?,
            AstExpr::Nested(inner) => self.bind(inner)?,
            AstExpr::UnaryOp { op: UnaryOperator::Not, expr } => Expr::Not(Box::new(self.bind(expr)?)),
            AstExpr::UnaryOp { op: UnaryOperator::Minus, expr } => Expr::Neg(Box::new(self.bind(expr)?)),
            AstExpr::UnaryOp { op: UnaryOperator::Plus, expr } => self.bind(expr)?,
            AstExpr::BinaryOp { left, op, right } => {
                let op = binary_op(op).ok_or_else(|| SqlError::unsupported(span, format!("the operator {op}")))?;
                Expr::Binary(op, Box::new(self.bind(left)?), Box::new(self.bind(right)?))
            }
            AstExpr::IsNull(x) => Expr::IsNull { expr: Box::new(self.bind(x)?), negated: false },
            AstExpr::IsNotNull(x) => Expr::IsNull { expr: Box::new(self.bind(x)?), negated: true },
            AstExpr::In { expr, target: ast::InTarget::List(list), negated, global: false } => {
                Expr::InList { expr: Box::new(self.bind(expr)?), list: list.iter().map(|x| self.bind(x)).collect::<Result<_>>()?, negated: *negated }
            }
            AstExpr::Like { negated, any: false, expr, pattern, escape_char: None } => {
                Expr::Like { expr: Box::new(self.bind(expr)?), pattern: Box::new(self.bind(pattern)?), negated: *negated }
            }
            AstExpr::Case { operand, conditions, else_result, .. } => {
                let operand = operand.as_ref().map(|o| self.bind(o)).transpose()?;
                let mut whens = Vec::new();
                for w in conditions {
                    let condition = self.bind(&w.condition)?;
                    let condition = match &operand {
                        Some(o) => Expr::Binary(BinaryOp::Eq, Box::new(o.clone()), Box::new(condition)),
                        None => condition,
                    };
                    whens.push((condition, self.bind(&w.result)?));
                }
                let otherwise = else_result.as_ref().map(|x| self.bind(x).map(Box::new)).transpose()?;
                Expr::Case { whens, otherwise }
            }
            AstExpr::Cast { kind: ast::CastKind::Cast | ast::CastKind::DoubleColon, expr, data_type, format: None } => {
                Expr::Cast(Box::new(self.bind(expr)?), sql_type(data_type, span)?)
            }
            AstExpr::Trim { expr, trim_where: None, trim_what: None, trim_characters: None } => Expr::Call(Func::Trim, vec![self.bind(expr)?]),
            AstExpr::Function(f) => self.bind_function(f)?,
            AstExpr::Subquery(q) => match self.subqueries.iter().find(|(text, _)| *text == q.to_string()) {
                Some((_, column)) => Expr::Column(*column),
                None => return Err(SqlError::unsupported(span, "a subquery here (only scalar subqueries in the select list)")),
            },
            other => return Err(SqlError::unsupported(span, format!("the expression {other}"))),
        };
        typed(bound, self.scope)
    }

    fn column(&self, qualifier: Option<&str>, name: &str, span: Span) -> Result<Expr> {
        match self.scope.resolve(qualifier, name, span)? {
            Some(c) => Ok(Expr::Column(c)),
            None => Err(SqlError::at(span, format!("no column {}{name} here", qualifier.map(|q| format!("{q}.")).unwrap_or_default()))),
        }
    }

    fn bind_function(&mut self, f: &ast::Function) -> Result<Expr> {
        let span = f.span();
        let name = object_name(&f.name)?;
        if f.over.is_some() {
            return match self.windows.iter().find(|(text, _)| *text == f.to_string()) {
                Some((_, column)) => Ok(Expr::Column(*column)),
                None => Err(SqlError::unsupported(span, format!("the window function {f} here"))),
            };
        }
        if aggregate_func(f).is_some() {
            return Err(SqlError::at(span, format!("the aggregate {f} outside a GROUP BY query's select list or HAVING")));
        }
        let FunctionArguments::List(list) = &f.args else {
            return Err(SqlError::unsupported(span, format!("{f}")));
        };
        if list.duplicate_treatment.is_some() || !list.clauses.is_empty() || f.filter.is_some() {
            return Err(SqlError::unsupported(span, format!("{f}")));
        }
        let mut args = Vec::new();
        for a in &list.args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => args.push(self.bind(x)?),
                other => return Err(SqlError::unsupported(span, format!("the argument {other} of {name}"))),
            }
        }
        let (func, arity): (Func, &[usize]) = match name.as_str() {
            "coalesce" => (Func::Coalesce, &[]),
            "nullif" => (Func::Nullif, &[2]),
            "concat" => (Func::Concat, &[]),
            "concat_ws" => (Func::ConcatWs, &[]),
            "lower" => (Func::Lower, &[1]),
            "upper" => (Func::Upper, &[1]),
            "trim" | "btrim" => (Func::Trim, &[1]),
            "length" | "char_length" | "character_length" => (Func::Length, &[1]),
            "to_timestamp" => (Func::ToTimestamp, &[1]),
            _ => return Err(SqlError::unsupported(span, format!("the function {name}"))),
        };
        if (!arity.is_empty() && !arity.contains(&args.len())) || args.is_empty() || (func == Func::ConcatWs && args.len() < 2) {
            return Err(SqlError::at(span, format!("{name} does not take {} argument(s)", args.len())));
        }
        Ok(Expr::Call(func, args))
    }
}

fn descending(item: &ast::OrderByExpr) -> Result<bool> {
    match &item.options.sort {
        None | Some(ast::OrderBySort::Asc) => Ok(false),
        Some(ast::OrderBySort::Desc) => Ok(true),
        Some(other) => Err(SqlError::unsupported(item.expr.span(), format!("ORDER BY ... {other:?}"))),
    }
}

fn aggregate_func(f: &ast::Function) -> Option<AggFunc> {
    let name = object_name(&f.name).ok()?;
    Some(match name.as_str() {
        "count" => AggFunc::Count,
        "sum" => AggFunc::Sum,
        "min" => AggFunc::Min,
        "max" => AggFunc::Max,
        "avg" => AggFunc::Avg,
        "string_agg" => AggFunc::StringAgg,
        _ => return None,
    })
    .filter(|_| f.over.is_none())
}

fn contains_aggregate(e: &AstExpr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x| {
        if let AstExpr::Function(f) = x {
            if aggregate_func(f).is_some() {
                found = true;
                return std::ops::ControlFlow::Break(());
            }
        }
        if let AstExpr::Subquery(_) = x {
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    });
    found
}

fn binary_op(op: &BinaryOperator) -> Option<BinaryOp> {
    Some(match op {
        BinaryOperator::Plus => BinaryOp::Add,
        BinaryOperator::Minus => BinaryOp::Sub,
        BinaryOperator::Multiply => BinaryOp::Mul,
        BinaryOperator::Divide => BinaryOp::Div,
        BinaryOperator::Eq => BinaryOp::Eq,
        BinaryOperator::NotEq => BinaryOp::NotEq,
        BinaryOperator::Lt => BinaryOp::Lt,
        BinaryOperator::LtEq => BinaryOp::LtEq,
        BinaryOperator::Gt => BinaryOp::Gt,
        BinaryOperator::GtEq => BinaryOp::GtEq,
        BinaryOperator::And => BinaryOp::And,
        BinaryOperator::Or => BinaryOp::Or,
        BinaryOperator::StringConcat => BinaryOp::Concat,
        _ => return None,
    })
}

fn literal(v: &Value, span: Span) -> Result<Expr> {
    Ok(match v {
        Value::Null => Expr::Literal(Literal::Null, SqlType::Text),
        Value::Boolean(b) => Expr::Literal(Literal::Bool(*b), SqlType::Bool),
        Value::SingleQuotedString(s) => Expr::Literal(Literal::Text(s.clone()), SqlType::Text),
        Value::Number(n, _) if n.contains(['e', 'E']) => {
            Expr::Literal(Literal::Double(n.parse().map_err(|_| SqlError::at(span, format!("the number {n}")))?), SqlType::Double)
        }
        Value::Number(n, _) if n.contains('.') => {
            let scale = n.len() - n.find('.').expect("has a point") - 1;
            Expr::Literal(Literal::Decimal(n.clone()), SqlType::Decimal { scale: Some(scale as u32) })
        }
        Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => Expr::Literal(Literal::Int(i), SqlType::Int),
            Err(_) => Expr::Literal(Literal::Decimal(n.clone()), SqlType::Decimal { scale: Some(0) }),
        },
        other => return Err(SqlError::unsupported(span, format!("the literal {other}"))),
    })
}

struct Planner<'a> {
    relations: &'a dyn Relations,
}

impl Planner<'_> {
    fn query(&self, q: &ast::Query) -> Result<Planned> {
        let span = q.span();
        if q.with.is_some() {
            return Err(SqlError::unsupported(span, "WITH (write the common table expression as a view)"));
        }
        if q.limit_clause.is_some() || q.fetch.is_some() {
            return Err(SqlError::unsupported(span, "LIMIT, OFFSET or FETCH in a view"));
        }
        if !q.locks.is_empty() || q.for_clause.is_some() || q.settings.is_some() || q.format_clause.is_some() || !q.pipe_operators.is_empty() {
            return Err(SqlError::unsupported(span, "this query clause"));
        }
        let select = match q.body.as_ref() {
            SetExpr::Select(s) => s,
            SetExpr::Query(inner) if q.order_by.is_none() => return self.query(inner),
            other => return Err(SqlError::unsupported(other.span(), "UNION, INTERSECT, EXCEPT and VALUES")),
        };
        let order_by = match &q.order_by {
            None => Vec::new(),
            Some(ast::OrderBy { kind: OrderByKind::Expressions(items), .. }) => items.iter().collect(),
            Some(other) => return Err(SqlError::unsupported(span, format!("{other}"))),
        };
        self.select(select, &order_by)
    }

    fn select(&self, s: &ast::Select, order_by: &[&ast::OrderByExpr]) -> Result<Planned> {
        let span = s.span();
        if s.top.is_some() || s.into.is_some() || !s.lateral_views.is_empty() || s.prewhere.is_some() || !s.connect_by.is_empty() {
            return Err(SqlError::unsupported(span, "this SELECT clause"));
        }
        if !s.cluster_by.is_empty() || !s.distribute_by.is_empty() || !s.sort_by.is_empty() || !s.named_window.is_empty() || s.qualify.is_some() {
            return Err(SqlError::unsupported(span, "this SELECT clause"));
        }
        let (mut plan, mut scope) = self.from(&s.from, span)?;
        if let Some(w) = &s.selection {
            let predicate = Binder { scope: &scope, grouping: None, subqueries: &[], windows: &[] }.bind(w)?;
            expect_bool(&predicate, &scope.columns, w.span())?;
            plan = Plan::Filter { input: Box::new(plan), predicate };
        }
        let subqueries = self.decorrelate_select_list(s, &mut plan, &mut scope)?;

        let group_by = match &s.group_by {
            GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs,
            other => return Err(SqlError::unsupported(span, format!("{other}"))),
        };
        let grouped = !group_by.is_empty() || s.projection.iter().any(|item| select_expr(item).is_some_and(contains_aggregate)) || s.having.is_some();

        // Window functions (ROW_NUMBER) are computed on the rows before the select list.
        let windows = if grouped { Vec::new() } else { self.plan_windows(s, &mut plan, &mut scope)? };

        let (mut plan, mut grouping) = if grouped {
            let (p, g) = self.group(s, group_by, plan, &scope, &subqueries)?;
            (p, Some(g))
        } else {
            (plan, None)
        };
        let out_columns = plan.columns();

        // The select list.
        let mut exprs = Vec::new();
        let mut names = Vec::new();
        for item in &s.projection {
            match item {
                SelectItem::Wildcard(_) => {
                    for (i, n) in scope.names.iter().enumerate().filter(|(_, n)| !n.hidden) {
                        exprs.push(Expr::Column(i));
                        names.push(n.name.clone());
                    }
                }
                SelectItem::QualifiedWildcard(ast::SelectItemQualifiedWildcardKind::ObjectName(q), _) => {
                    let q = object_name(q)?;
                    let before = exprs.len();
                    for (i, n) in scope.names.iter().enumerate().filter(|(_, n)| !n.hidden && n.qualifier.as_deref() == Some(q.as_str())) {
                        exprs.push(Expr::Column(i));
                        names.push(n.name.clone());
                    }
                    if exprs.len() == before {
                        return Err(SqlError::at(item.span(), format!("no table {q} here")));
                    }
                }
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    let bound = Binder { scope: &scope, grouping: grouping.as_mut(), subqueries: &subqueries, windows: &windows }.bind(e)?;
                    if grouping.is_some() {
                        infer(&bound, &out_columns).map_err(|m| SqlError::at(e.span(), m))?;
                    }
                    exprs.push(bound);
                    names.push(match item {
                        SelectItem::ExprWithAlias { alias, .. } => ident(alias),
                        _ => default_name(e),
                    });
                }
                other => return Err(SqlError::unsupported(other.span(), format!("the select item {other}"))),
            }
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(SqlError::at(
                    s.projection.get(i).map_or(span, |p| p.span()),
                    format!("the column name {n} appears twice; give one an alias"),
                ));
            }
        }

        match &s.distinct {
            None | Some(ast::Distinct::All) => {
                if !order_by.is_empty() {
                    return Err(SqlError::unsupported(
                        order_by[0].expr.span(),
                        "ORDER BY in a view (rows of a view have no order; ORDER BY goes with DISTINCT ON)",
                    ));
                }
                plan = Plan::Map { input: Box::new(plan), exprs, names: names.clone() };
            }
            Some(ast::Distinct::Distinct) => {
                if !order_by.is_empty() {
                    return Err(SqlError::unsupported(order_by[0].expr.span(), "ORDER BY in a view"));
                }
                plan = Plan::Distinct { input: Box::new(Plan::Map { input: Box::new(plan), exprs, names: names.clone() }) };
            }
            Some(ast::Distinct::On(on)) => {
                // TopOne over the row with every column the output, the
                // partition and the order need, then the output.
                if grouping.is_some() {
                    return Err(SqlError::unsupported(on.first().map_or(span, |e| e.span()), "DISTINCT ON in a GROUP BY query"));
                }
                let bind = |e: &AstExpr| Binder { scope: &scope, grouping: None, subqueries: &subqueries, windows: &windows }.bind(e);
                let mut pre: Vec<Expr> = exprs.clone();
                let mut pre_names = names.clone();
                let partition: Vec<usize> = on.iter().map(|e| Ok(column_for(bind(e)?, &mut pre, &mut pre_names))).collect::<Result<_>>()?;
                let mut order = Vec::new();
                for item in order_by {
                    order.push((column_for(bind(&item.expr)?, &mut pre, &mut pre_names), descending(item)?));
                }
                let leading: Vec<usize> = order.iter().take(partition.len()).map(|(c, _)| *c).collect();
                if !order.is_empty() && !partition.iter().all(|p| leading.contains(p)) {
                    return Err(SqlError::at(order_by[0].expr.span(), "SELECT DISTINCT ON expressions must match the leading ORDER BY expressions"));
                }
                let order: Vec<(usize, bool)> = order.into_iter().filter(|(c, _)| !partition.contains(c)).collect();
                let width = names.len();
                plan = Plan::TopOne {
                    input: Box::new(Plan::Map { input: Box::new(plan), exprs: pre, names: pre_names }),
                    partition_by: partition,
                    order_by: order,
                };
                plan = Plan::Map { input: Box::new(plan), exprs: (0..width).map(Expr::Column).collect(), names: names.clone() };
            }
        }
        Ok(Planned { plan, names })
    }

    fn from(&self, from: &[ast::TableWithJoins], span: Span) -> Result<(Plan, Scope)> {
        let [first] = from else {
            return Err(SqlError::unsupported(span, if from.is_empty() { "SELECT without FROM" } else { "FROM a, b (write JOIN ... ON)" }));
        };
        let (mut plan, mut scope) = self.relation(&first.relation)?;
        for join in &first.joins {
            let (kind, constraint) = match &join.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, c),
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
                other => {
                    let name = match other {
                        JoinOperator::Right(_) | JoinOperator::RightOuter(_) => "RIGHT JOIN",
                        JoinOperator::FullOuter(_) => "FULL JOIN",
                        JoinOperator::CrossJoin(_) => "CROSS JOIN",
                        _ => "this kind of join",
                    };
                    return Err(SqlError::unsupported(join.relation.span(), format!("this join: {name} (JOIN and LEFT JOIN are)")));
                }
            };
            let JoinConstraint::On(on) = constraint else {
                return Err(SqlError::unsupported(join.relation.span(), "a join without ON (USING, NATURAL or none)"));
            };
            let (right, right_scope) = self.relation(&join.relation)?;
            (plan, scope) = self.join(plan, scope, right, right_scope, kind, on)?;
        }
        Ok((plan, scope))
    }

    fn relation(&self, factor: &TableFactor) -> Result<(Plan, Scope)> {
        match factor {
            TableFactor::Table { name, alias, args: None, with_hints, version: None, partitions, .. }
                if with_hints.is_empty() && partitions.is_empty() =>
            {
                let relation = object_name(name)?;
                let columns =
                    self.relations.columns(&relation).ok_or_else(|| SqlError::at(name.span(), format!("no source or view named {relation}")))?;
                let qualifier = alias_name(alias.as_ref())?.unwrap_or_else(|| relation.clone());
                let scope = Scope::of(&qualifier, columns.clone());
                Ok((Plan::Get { relation, columns }, scope))
            }
            TableFactor::Derived { lateral: false, subquery, alias, .. } => {
                let planned = self.query(subquery)?;
                let qualifier = alias_name(alias.as_ref())?.ok_or_else(|| SqlError::at(factor.span(), "a subquery in FROM needs an alias"))?;
                let mut columns = planned.plan.columns();
                for (c, n) in columns.iter_mut().zip(&planned.names) {
                    c.name = n.clone();
                }
                Ok((planned.plan, Scope::of(&qualifier, columns)))
            }
            other => Err(SqlError::unsupported(other.span(), format!("{other} in FROM"))),
        }
    }

    /// A join on the column equalities of `on`; other conditions on the
    /// right side alone filter the right input first (what a LEFT JOIN's ON
    /// means), on both sides of an inner join filter after it.
    fn join(&self, left: Plan, left_scope: Scope, right: Plan, right_scope: Scope, kind: JoinKind, on: &AstExpr) -> Result<(Plan, Scope)> {
        let width = left_scope.columns.len();
        let scope = left_scope.join(right_scope.clone(), kind);
        let mut pairs = Vec::new();
        let mut right_filters = Vec::new();
        let mut after = Vec::new();
        for conjunct in conjuncts(on) {
            let bound = Binder { scope: &scope, grouping: None, subqueries: &[], windows: &[] }.bind(conjunct)?;
            let mut cols = Vec::new();
            bound.columns(&mut cols);
            if let Expr::Binary(BinaryOp::Eq, a, b) = &bound {
                if let (Expr::Column(x), Expr::Column(y)) = (a.as_ref(), b.as_ref()) {
                    let (x, y) = (*x.min(y), *x.max(y));
                    if x < width && y >= width {
                        pairs.push((x, y - width));
                        continue;
                    }
                }
            }
            if !cols.is_empty() && cols.iter().all(|&c| c >= width) {
                right_filters.push(bound.remap(&|c| c - width));
            } else if kind == JoinKind::Inner {
                after.push(bound);
            } else {
                return Err(SqlError::unsupported(
                    conjunct.span(),
                    "this condition in a LEFT JOIN's ON (only equalities of a left and a right column, and conditions on the right side alone)",
                ));
            }
        }
        if pairs.is_empty() {
            return Err(SqlError::unsupported(on.span(), "a join without an equality of a left and a right column"));
        }
        let right = right_filters.into_iter().fold(right, |input, predicate| Plan::Filter { input: Box::new(input), predicate });
        let plan = Plan::Join { kind, left: Box::new(left), right: Box::new(right), on: pairs };
        let plan = after.into_iter().fold(plan, |input, predicate| Plan::Filter { input: Box::new(input), predicate });
        Ok((plan, scope))
    }

    /// Plans each scalar subquery of the select list as a LEFT JOIN of the
    /// rows so far with the subquery's rows on its correlation columns, and
    /// returns where each one's value now is. Only subqueries that return at
    /// most one row per outer row (a key of theirs is correlated) qualify.
    fn decorrelate_select_list(&self, s: &ast::Select, plan: &mut Plan, scope: &mut Scope) -> Result<Vec<(String, usize)>> {
        let mut found = Vec::new();
        for item in &s.projection {
            if let Some(e) = select_expr(item) {
                let _ = ast::visit_expressions(e, |x| {
                    if let AstExpr::Subquery(q) = x {
                        found.push(q.clone());
                    }
                    std::ops::ControlFlow::<()>::Continue(())
                });
            }
        }
        let mut columns = Vec::new();
        for q in found {
            let text = q.to_string();
            if columns.iter().any(|(t, _)| *t == text) {
                continue;
            }
            let column = self.decorrelate(&q, plan, scope)?;
            columns.push((text, column));
        }
        Ok(columns)
    }

    fn decorrelate(&self, q: &ast::Query, plan: &mut Plan, scope: &mut Scope) -> Result<usize> {
        let span = q.span();
        let refuse = |what: &str| {
            SqlError::unsupported(
                span,
                format!("this subquery ({what}); a scalar subquery reads one relation, with equalities to outer columns in its WHERE"),
            )
        };
        let SetExpr::Select(s) = q.body.as_ref() else { return Err(refuse("not a SELECT")) };
        if q.with.is_some()
            || q.order_by.is_some()
            || q.limit_clause.is_some()
            || s.distinct.is_some()
            || !matches!(&s.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
            || s.having.is_some()
        {
            return Err(refuse("WITH, ORDER BY, LIMIT, DISTINCT or GROUP BY"));
        }
        let [item] = s.projection.as_slice() else { return Err(refuse("more than one column")) };
        let value = select_expr(item).ok_or_else(|| refuse("a wildcard"))?;
        let [from] = s.from.as_slice() else { return Err(refuse("several relations")) };
        if !from.joins.is_empty() {
            return Err(refuse("a join"));
        }
        let (inner, inner_scope) = self.relation(&from.relation)?;
        let mut local = Vec::new();
        let mut correlation: Vec<(usize, usize)> = Vec::new();
        for conjunct in s.selection.iter().flat_map(conjuncts) {
            let inner_binder = || Binder { scope: &inner_scope, grouping: None, subqueries: &[], windows: &[] };
            if let Ok(bound) = inner_binder().bind(conjunct) {
                local.push(bound);
                continue;
            }
            let AstExpr::BinaryOp { left, op: BinaryOperator::Eq, right } = conjunct else {
                return Err(refuse(&format!("the condition {conjunct}")));
            };
            let outer_binder = || Binder { scope, grouping: None, subqueries: &[], windows: &[] };
            let pair = match (inner_binder().bind(left), outer_binder().bind(right)) {
                (Ok(Expr::Column(i)), Ok(Expr::Column(o))) => Some((i, o)),
                _ => match (inner_binder().bind(right), outer_binder().bind(left)) {
                    (Ok(Expr::Column(i)), Ok(Expr::Column(o))) => Some((i, o)),
                    _ => None,
                },
            };
            correlation.push(pair.ok_or_else(|| refuse(&format!("the condition {conjunct}")))?);
        }
        if correlation.is_empty() {
            return Err(refuse("no correlation with the outer query"));
        }
        let value = Binder { scope: &inner_scope, grouping: None, subqueries: &[], windows: &[] }.bind(value)?;
        let value_column = Column {
            name: default_name(select_expr(item).expect("checked")),
            ty: infer(&value, &inner_scope.columns).unwrap_or(SqlType::Text),
            nullable: true,
        };
        let filtered = local.into_iter().fold(inner, |input, predicate| Plan::Filter { input: Box::new(input), predicate });
        let unique = filtered.unique_keys(self.relations).iter().any(|key| key.iter().all(|k| correlation.iter().any(|(i, _)| i == k)));
        if !unique {
            return Err(refuse(
                "it may return more than one row: correlate it on a key of its relation, or keep one row per key with ROW_NUMBER() ... = 1",
            ));
        }
        let mut exprs: Vec<Expr> = correlation.iter().map(|(i, _)| Expr::Column(*i)).collect();
        exprs.push(value);
        let mut names: Vec<String> = correlation.iter().map(|(i, _)| inner_scope.columns[*i].name.clone()).collect();
        names.push(value_column.name.clone());
        let right = Plan::Map { input: Box::new(filtered), exprs, names };
        let width = scope.columns.len();
        let on = correlation.iter().enumerate().map(|(k, (_, o))| (*o, k)).collect();
        *plan = Plan::Join { kind: JoinKind::Left, left: Box::new(take(plan)), right: Box::new(right), on };
        // The right side's correlation columns, then its value: hidden.
        for (i, _) in &correlation {
            scope.push_hidden(Column { nullable: true, ..inner_scope.columns[*i].clone() });
        }
        debug_assert_eq!(scope.columns.len(), width + correlation.len());
        Ok(scope.push_hidden(value_column))
    }

    /// ROW_NUMBER() OVER (...) items of the select list: each adds a column.
    fn plan_windows(&self, s: &ast::Select, plan: &mut Plan, scope: &mut Scope) -> Result<Vec<(String, usize)>> {
        let mut windows = Vec::new();
        for item in &s.projection {
            let Some(e) = select_expr(item) else { continue };
            let mut calls = Vec::new();
            let _ = ast::visit_expressions(e, |x| {
                if let AstExpr::Function(f) = x {
                    if f.over.is_some() {
                        calls.push(f.clone());
                    }
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
            for f in calls {
                let span = f.span();
                let name = object_name(&f.name)?;
                let Some(ast::WindowType::WindowSpec(spec)) = &f.over else {
                    return Err(SqlError::unsupported(span, "a named window"));
                };
                let no_args = matches!(&f.args, FunctionArguments::List(l) if l.args.is_empty()) || matches!(f.args, FunctionArguments::None);
                if name != "row_number" || !no_args || spec.window_frame.is_some() || spec.window_name.is_some() {
                    return Err(SqlError::unsupported(
                        span,
                        format!("the window function {f} (ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) is)"),
                    ));
                }
                // Partition and order columns are added to the row first.
                let mut exprs: Vec<Expr> = (0..scope.columns.len()).map(Expr::Column).collect();
                let mut names: Vec<String> = scope.columns.iter().map(|c| c.name.clone()).collect();
                let bind = |e: &AstExpr, scope: &Scope| Binder { scope, grouping: None, subqueries: &[], windows: &[] }.bind(e);
                let mut partition_by = Vec::new();
                for p in &spec.partition_by {
                    let bound = bind(p, scope)?;
                    partition_by.push(column_for(bound, &mut exprs, &mut names));
                }
                let mut order_by = Vec::new();
                for o in &spec.order_by {
                    let bound = bind(&o.expr, scope)?;
                    order_by.push((column_for(bound, &mut exprs, &mut names), descending(o)?));
                }
                let input = Plan::Map { input: Box::new(take(plan)), exprs, names };
                let input_columns = input.columns();
                for c in &input_columns[scope.columns.len()..] {
                    scope.push_hidden(c.clone());
                }
                *plan = Plan::RowNumber { input: Box::new(input), partition_by, order_by, name: "row_number".into() };
                let column = scope.push_hidden(Column { name: "row_number".into(), ty: SqlType::Int, nullable: false });
                windows.push((f.to_string(), column));
            }
        }
        Ok(windows)
    }

    /// GROUP BY: a map computes the group keys and the aggregates' inputs,
    /// a reduce groups them, HAVING filters the groups. Returns the plan and
    /// the grouping, with which the select list binds to the reduce's
    /// output: group keys first, then aggregates.
    fn group(&self, s: &ast::Select, group_by: &[AstExpr], plan: Plan, scope: &Scope, subqueries: &[(String, usize)]) -> Result<(Plan, Grouping)> {
        let mut keys = Vec::new();
        for g in group_by {
            if let AstExpr::Value(v) = g {
                if let Value::Number(..) = v.value {
                    return Err(SqlError::unsupported(g.span(), "GROUP BY a position (name the column)"));
                }
            }
            let bound = Binder { scope, grouping: None, subqueries, windows: &[] }.bind(g)?;
            if !keys.contains(&bound) {
                keys.push(bound);
            }
        }
        let key_len = keys.len();
        // A subquery's value depends only on its correlation columns: when
        // those are grouped, so is the value (one more key, same groups).
        for (_, column) in subqueries {
            let grouped_correlation = correlation_columns_of(&plan, *column).iter().all(|c| keys.contains(&Expr::Column(*c)));
            if !grouped_correlation {
                return Err(SqlError::at(s.span(), "a scalar subquery in a GROUP BY query must correlate on grouped columns"));
            }
            keys.push(Expr::Column(*column));
        }
        let mut grouping = Grouping { keys, aggregates: Vec::new(), agg_inputs: Vec::new() };
        // Bind the select list and HAVING once to collect the aggregates.
        for item in &s.projection {
            match select_expr(item) {
                Some(e) => {
                    Binder { scope, grouping: Some(&mut grouping), subqueries, windows: &[] }.bind(e)?;
                }
                None => return Err(SqlError::unsupported(item.span(), "* in a GROUP BY query")),
            }
        }
        let having = match &s.having {
            Some(h) => Some((Binder { scope, grouping: Some(&mut grouping), subqueries, windows: &[] }.bind(h)?, h.span())),
            None => None,
        };
        let n_keys = grouping.keys.len();
        let mut exprs = grouping.keys.clone();
        exprs.extend(grouping.agg_inputs.iter().cloned());
        let names: Vec<String> = (0..exprs.len()).map(|i| format!("?{i}")).collect();
        let pre = Plan::Map { input: Box::new(plan), exprs, names };
        let aggregates: Vec<Aggregate> = grouping
            .aggregates
            .iter()
            .map(|a| Aggregate { arg: a.arg.map(|c| c + n_keys), order_by: a.order_by.iter().map(|(c, d)| (c + n_keys, *d)).collect(), ..a.clone() })
            .collect();
        let mut out_names: Vec<String> = (0..n_keys).map(|i| format!("?key{i}")).collect();
        out_names.extend((0..aggregates.len()).map(|i| format!("?agg{i}")));
        let mut reduced = Plan::Reduce { input: Box::new(pre), group_by: (0..n_keys).collect(), key_len, aggregates, names: out_names };
        if let Some((predicate, span)) = having {
            expect_bool(&predicate, &reduced.columns(), span)?;
            reduced = Plan::Filter { input: Box::new(reduced), predicate };
        }
        Ok((reduced, grouping))
    }
}

/// The outer columns a decorrelated subquery's value column is joined on.
fn correlation_columns_of(plan: &Plan, value_column: usize) -> Vec<usize> {
    {
        fn walk(plan: &Plan, value_column: usize, width: usize) -> Option<Vec<usize>> {
            match plan {
                Plan::Join { kind: JoinKind::Left, left, right, on } => {
                    let lw = left.columns().len();
                    let rw = right.columns().len();
                    if lw + rw == width && value_column == width - 1 {
                        return Some(on.iter().map(|(l, _)| *l).collect());
                    }
                    walk(left, value_column, lw)
                }
                Plan::Filter { input, .. } => walk(input, value_column, width),
                _ => None,
            }
        }
        walk(plan, value_column, plan.columns().len()).unwrap_or_default()
    }
}

fn expect_bool(e: &Expr, columns: &[Column], span: Span) -> Result<()> {
    match infer(e, columns) {
        Ok(SqlType::Bool) => Ok(()),
        Ok(other) => Err(SqlError::at(span, format!("a condition must be boolean, not {other}"))),
        Err(m) => Err(SqlError::at(span, m)),
    }
}

fn select_expr(item: &SelectItem) -> Option<&AstExpr> {
    match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    }
}

fn alias_name(alias: Option<&ast::TableAlias>) -> Result<Option<String>> {
    match alias {
        None => Ok(None),
        Some(a) if a.columns.is_empty() => Ok(Some(ident(&a.name))),
        Some(a) => Err(SqlError::unsupported(a.name.span, "column aliases on a table")),
    }
}

/// The name PostgreSQL gives an unaliased select item.
fn default_name(e: &AstExpr) -> String {
    match e {
        AstExpr::Identifier(i) => ident(i),
        AstExpr::CompoundIdentifier(parts) => parts.last().map(ident).unwrap_or_default(),
        AstExpr::Function(f) => object_name(&f.name).unwrap_or_default(),
        AstExpr::Cast { expr, .. } | AstExpr::Nested(expr) => default_name(expr),
        AstExpr::Case { .. } => "case".into(),
        _ => "?column?".into(),
    }
}

/// The ANDed parts of a condition.
fn conjuncts(e: &AstExpr) -> Vec<&AstExpr> {
    match e {
        AstExpr::BinaryOp { left, op: BinaryOperator::And, right } => {
            let mut out = conjuncts(left);
            out.extend(conjuncts(right));
            out
        }
        AstExpr::Nested(inner) => conjuncts(inner),
        other => vec![other],
    }
}

/// The position of `e` among `exprs`, added (with a made-up name) when it
/// is not there yet: the columns a map computes for a later operator.
fn column_for(e: Expr, exprs: &mut Vec<Expr>, names: &mut Vec<String>) -> usize {
    exprs.iter().position(|x| *x == e).unwrap_or_else(|| {
        exprs.push(e);
        names.push(format!("?{}", names.len()));
        exprs.len() - 1
    })
}

/// The plan out of `plan`, leaving a placeholder to be overwritten.
fn take(plan: &mut Plan) -> Plan {
    std::mem::replace(plan, Plan::Get { relation: String::new(), columns: Vec::new() })
}
