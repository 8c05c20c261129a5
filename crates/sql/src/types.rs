//! The SQL types a declaration names, as the engine's [`SqlType`]s.

use cdcview_engine::types::SqlType;
use sqlparser::ast::{DataType, ExactNumberInfo, TimezoneInfo};
use sqlparser::tokenizer::Span;

use crate::error::{Result, SqlError};

/// The engine's type for a declared SQL type, or why there is none.
pub fn sql_type(ty: &DataType, span: Span) -> Result<SqlType> {
    use DataType as D;
    Ok(match ty {
        D::Boolean | D::Bool => SqlType::Bool,
        D::SmallInt(_) | D::Int(_) | D::Integer(_) | D::BigInt(_) | D::TinyInt(_) | D::Int2(_) | D::Int4(_) | D::Int8(_) => SqlType::Int,
        D::Decimal(info) | D::Numeric(info) | D::Dec(info) => SqlType::Decimal {
            scale: match info {
                ExactNumberInfo::PrecisionAndScale(_, s) => {
                    Some(u32::try_from(*s).map_err(|_| SqlError::at(span, format!("a negative scale in {ty}")))?)
                }
                ExactNumberInfo::Precision(_) => Some(0),
                ExactNumberInfo::None => None,
            },
        },
        D::Double(_) | D::DoublePrecision | D::Float8 | D::Real | D::Float4 | D::Float(_) => SqlType::Double,
        D::Text | D::Varchar(_) | D::CharacterVarying(_) | D::Char(_) | D::Character(_) | D::String(_) => SqlType::Text,
        D::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithTimeZone | TimezoneInfo::Tz | TimezoneInfo::WithoutTimeZone) | D::Datetime(_) => {
            SqlType::Timestamp
        }
        other => return Err(SqlError::unsupported(span, format!("the type {other}"))),
    })
}
