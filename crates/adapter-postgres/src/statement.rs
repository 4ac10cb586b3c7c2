//! [`statement`]: a fixed SQL text with bind parameters that each connection prepares
//! once and then only executes.
//!
//! Diesel's `sql_query` never enters a connection's statement cache (raw SQL is marked
//! unsafe to cache), so every call would be parsed and planned again; for the
//! data-modifying CTEs of orders, payments and charges that planning costs the database
//! more than the work itself. A [`Statement`] is the same text every time, so it is safe
//! to cache: diesel keys it by its SQL and bind types, prepares it on first use (one
//! extra round trip per connection, once), and from then on sends only the parameters.
//!
//! The text uses PostgreSQL's `$1`, `$2`, … placeholders, as with `sql_query`, and a
//! placeholder may appear more than once. Results load by name, into
//! `#[derive(QueryableByName)]` structs.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::{QueryResult, RunQueryDsl};

/// A statement with no parameters bound yet.
pub(crate) fn statement(sql: &'static str) -> Statement<'static> {
    Statement {
        sql,
        binds: Vec::new(),
    }
}

/// A fixed SQL text and the values of its placeholders, in order.
#[must_use = "a statement only runs when loaded or executed"]
pub(crate) struct Statement<'a> {
    sql: &'static str,
    binds: Vec<Box<dyn Bind + 'a>>,
}

impl<'a> Statement<'a> {
    /// Binds the next placeholder (`$1` first) to `value`, sent as SQL type `ST`.
    pub(crate) fn bind<ST, V>(mut self, value: V) -> Self
    where
        Pg: HasSqlType<ST>,
        V: ToSql<ST, Pg> + Send + 'a,
        ST: Send + 'a,
    {
        self.binds.push(Box::new(Bound::<ST, V> {
            value,
            sql_type: PhantomData,
        }));
        self
    }
}

/// One bound value, able to push itself as a parameter of its SQL type.
trait Bind: Send {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

struct Bound<ST, V> {
    value: V,
    sql_type: PhantomData<ST>,
}

impl<ST, V> Bind for Bound<ST, V>
where
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg> + Send,
    ST: Send,
{
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, V>(&self.value)
    }
}

impl QueryFragment<Pg> for Statement<'_> {
    /// Writes the text with each `$n` replaced by a parameter holding the n-th value
    /// (diesel numbers parameters as it pushes them, so a placeholder used twice is
    /// sent twice). Never marks the statement unsafe to cache: the text is fixed.
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut rest = self.sql;
        while let Some(at) = rest.find('$') {
            let (before, from) = rest.split_at(at);
            let digits = from
                .get(1..)
                .unwrap_or_default()
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            out.push_sql(before);
            if digits == 0 {
                out.push_sql("$");
                rest = from.get(1..).unwrap_or_default();
                continue;
            }
            let (number, after) = from.get(1..).unwrap_or_default().split_at(digits);
            let bind = number
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| self.binds.get(i))
                .ok_or_else(|| {
                    diesel::result::Error::QueryBuilderError(
                        format!("${number} has no bound value").into(),
                    )
                })?;
            bind.push(&mut out)?;
            rest = after;
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl QueryId for Statement<'_> {
    type QueryId = ();
    // Cached by its SQL text and bind types, not by a Rust type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Statement<'_> {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Statement<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::debug_query;
    use diesel::sql_types::{BigInt, Text};

    #[test]
    fn placeholders_become_parameters_in_order_even_when_repeated() {
        let query = statement("SELECT $2::text, $1 + $1, '$ stays', $10")
            .bind::<BigInt, _>(7_i64)
            .bind::<Text, _>("x");
        // A placeholder with no value is an error, not a statement sent half-bound.
        let mut builder = diesel::pg::PgQueryBuilder::default();
        assert!(QueryFragment::<Pg>::to_sql(&query, &mut builder, &Pg).is_err());
        let query = statement("SELECT $2::text, $1 + $1, '$ stays'")
            .bind::<BigInt, _>(7_i64)
            .bind::<Text, _>("x");
        let shown = debug_query::<Pg, _>(&query).to_string();
        assert!(
            shown.starts_with("SELECT $1::text, $2 + $3, '$ stays'"),
            "{shown}"
        );
        assert!(shown.contains(r#"["x", 7, 7]"#), "{shown}");
    }
}
